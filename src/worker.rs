//! The per-drive worker thread: it owns the drive's backend (simulator or, later, a serial
//! link with its codec), takes commands over a bounded channel and sends batched events back.
//! A panic or error inside it turns into a fault event; the rest of the app carries on.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError, bounded};
use thiserror::Error;

use crate::drive::{Command, DriveState, Event, ParamSpec, Sample, SignalSpec};
use crate::link::LinkInput;
use crate::telemetry::{RecordHub, SharedTelemetry};

/// Commands waiting for a worker; a full queue means the drive is not keeping up.
pub const COMMAND_CAPACITY: usize = 64;
/// Event batches waiting for the UI: ~10 s of telemetry at the default poll rate.
pub const EVENT_CAPACITY: usize = 1024;
/// Control events kept while the consumer is not reading (beyond this the oldest go).
const MAX_PENDING_CONTROL: usize = 4096;
/// First pause before reconnecting a lost link; it doubles after each failed try.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// The longest pause between reconnection tries.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// The least time between two repaint requests from one worker.
const REPAINT_INTERVAL: Duration = Duration::from_millis(15);

/// Asks the UI to repaint soon; `None` for headless use.
pub type RepaintFn = Arc<dyn Fn() + Send + Sync>;

/// The session clock: every sample of every drive is timed in seconds since one start.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock { start: Instant::now() }
    }

    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// What a backend announces when it connects.
#[derive(Debug, Clone, PartialEq)]
pub struct Connected {
    pub signals: Vec<SignalSpec>,
    pub params: Vec<ParamSpec>,
}

/// One drive as the worker sees it: the simulator or a link plus its codec.
pub trait Backend: Send {
    /// Opens the drive. `now_s` is the session time.
    fn connect(&mut self, now_s: f64) -> Result<Connected, String>;
    /// Disables the power stage (best effort) and closes the drive.
    fn disconnect(&mut self);
    /// Carries out one command; replies and state changes go to `events`.
    fn command(&mut self, cmd: &Command, now_s: f64, events: &mut Vec<Event>) -> Result<(), String>;
    /// Periodic work: read telemetry, feed watchdogs. An error here means the drive is lost.
    fn poll(&mut self, now_s: f64, samples: &mut Vec<Sample>, events: &mut Vec<Event>) -> Result<(), String>;
    /// How often `poll` runs.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(10)
    }
    /// A channel that becomes ready when input arrives (bytes from the backend's link); the
    /// worker then calls [`Backend::service`]. `None` for backends without a link.
    fn input(&self) -> Option<Receiver<LinkInput>> {
        None
    }
    /// Session time at which the last E-STOP's bytes were handed to the link (or the stop was
    /// applied), reported once. A half-duplex protocol may have to wait for a reply in flight
    /// before its stop can go out; this says when it did.
    fn take_stop_sent(&mut self) -> Option<f64> {
        None
    }
    /// Handles the input that arrived. An error here means the drive is lost.
    fn service(
        &mut self,
        now_s: f64,
        samples: &mut Vec<Sample>,
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        let _ = (now_s, samples, events);
        Ok(())
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum SendError {
    #[error("the drive's command queue is full; the drive is not responding")]
    Busy,
    #[error("the drive's worker has stopped")]
    Stopped,
}

/// Where a worker puts its samples directly, on its own thread: the drive's telemetry store
/// and the bench's recorder. Without a tap, samples travel to the consumer as events.
#[derive(Clone)]
pub struct SampleTap {
    pub drive_id: u64,
    pub store: SharedTelemetry,
    pub hub: Arc<RecordHub>,
}

/// Handle to one running worker thread. Dropping it shuts the worker down and joins it.
pub struct Worker {
    commands: Option<Sender<Command>>,
    events: Receiver<Event>,
    estop: Arc<AtomicBool>,
    /// Session time (µs) of the newest E-STOP request, to measure how fast it goes out.
    estop_at_us: Arc<AtomicU64>,
    clock: Clock,
    dropped: Arc<AtomicU64>,
    auto_reconnect: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread `drive-<name>` around `backend`.
    pub fn spawn(
        name: &str,
        backend: Box<dyn Backend>,
        clock: Clock,
        repaint: Option<RepaintFn>,
        tap: Option<SampleTap>,
    ) -> Worker {
        let (cmd_tx, cmd_rx) = bounded(COMMAND_CAPACITY);
        let (ev_tx, ev_rx) = bounded(EVENT_CAPACITY);
        let estop = Arc::new(AtomicBool::new(false));
        let estop_at_us = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let auto_reconnect = Arc::new(AtomicBool::new(true));
        let mut state = WorkerLoop {
            backend,
            clock,
            commands: cmd_rx,
            events: ev_tx,
            estop: estop.clone(),
            estop_at_us: estop_at_us.clone(),
            dropped: dropped.clone(),
            auto_reconnect: auto_reconnect.clone(),
            repaint,
            tap,
            last_repaint: None,
            connected: false,
            lost: None,
            stop_pending: false,
            control: Default::default(),
        };
        let spawned = std::thread::Builder::new().name(format!("drive-{name}")).spawn(move || state.run());
        let join = match spawned {
            Ok(join) => Some(join),
            Err(e) => {
                // No thread: report it through a channel the UI already reads.
                let (tx, rx) = bounded(1);
                let _ = tx.send(Event::State(DriveState::Fault(format!("cannot start worker thread: {e}"))));
                return Worker {
                    commands: None,
                    events: rx,
                    estop,
                    estop_at_us,
                    clock,
                    dropped,
                    auto_reconnect,
                    join: None,
                };
            }
        };
        Worker {
            commands: Some(cmd_tx),
            events: ev_rx,
            estop,
            estop_at_us,
            clock,
            dropped,
            auto_reconnect,
            join,
        }
    }

    /// Whether a lost link is retried by itself (the default) or only on `Command::Connect`.
    /// Takes effect at once, also while the link is lost.
    pub fn set_auto_reconnect(&self, on: bool) {
        self.auto_reconnect.store(on, Ordering::SeqCst);
    }

    /// Queues a command without blocking.
    pub fn send(&self, cmd: Command) -> Result<(), SendError> {
        let tx = self.commands.as_ref().ok_or(SendError::Stopped)?;
        tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Busy,
            TrySendError::Disconnected(_) => SendError::Stopped,
        })
    }

    /// Emergency stop: raises a flag the worker checks before anything else, so the stop
    /// goes out even if the command queue is full, then wakes the worker.
    pub fn estop(&self) {
        self.estop_at_us.store((self.clock.now_s() * 1e6) as u64, Ordering::SeqCst);
        self.estop.store(true, Ordering::SeqCst);
        if let Some(tx) = &self.commands {
            let _ = tx.try_send(Command::EStop);
        }
    }

    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// Samples the worker had to drop because the event queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// True once the thread has ended (normally or by panic).
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(|j| j.is_finished())
    }

    /// Stops the worker: closing the command channel makes it disable and close the drive.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.commands = None;
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct LostLink {
    since_s: f64,
    next_try: Instant,
    pause: Duration,
}

struct WorkerLoop {
    backend: Box<dyn Backend>,
    clock: Clock,
    commands: Receiver<Command>,
    events: Sender<Event>,
    estop: Arc<AtomicBool>,
    estop_at_us: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    /// Off: a lost link waits for `Command::Connect` (the Reconnect button).
    auto_reconnect: Arc<AtomicBool>,
    repaint: Option<RepaintFn>,
    tap: Option<SampleTap>,
    last_repaint: Option<Instant>,
    connected: bool,
    /// An E-STOP went to the backend and its bytes are not known to be out yet.
    stop_pending: bool,
    /// Set while the link is lost: when it went, why, and the next reconnection try.
    lost: Option<LostLink>,
    /// Control events waiting for room in the event queue, oldest first.
    control: std::collections::VecDeque<Event>,
}

impl WorkerLoop {
    fn run(&mut self) {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.serve()));
        let message = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(format!("worker crashed: {}", panic_text(&panic))),
        };
        if let Some(message) = message {
            // Best effort: the backend may be the thing that broke.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.backend.disconnect()));
            let _ =
                self.events.send_timeout(Event::State(DriveState::Fault(message)), Duration::from_secs(1));
            self.request_repaint(true);
        }
    }

    fn serve(&mut self) -> Result<(), String> {
        let mut samples = Vec::new();
        let mut events = Vec::new();
        let mut next_poll = Instant::now();
        let mut reported_drops = 0;
        loop {
            if self.estop.swap(false, Ordering::SeqCst) {
                self.emergency_stop(None, &mut events)?;
                self.flush(&mut samples, &mut events);
            }
            // Wait for a command, input from the link, or the next poll — whichever comes
            // first; the thread sleeps in between.
            let input = if self.connected { self.backend.input() } else { None };
            let mut select = Select::new();
            let commands_index = select.recv(&self.commands);
            if let Some(input) = &input {
                select.recv(input);
            }
            let retrying = self.auto_reconnect.load(Ordering::SeqCst);
            let deadline = match &self.lost {
                Some(l) if retrying => l.next_try.min(next_poll),
                _ => next_poll,
            };
            match select.ready_deadline(deadline) {
                Ok(index) if index == commands_index => match self.commands.try_recv() {
                    Ok(cmd) => {
                        if self.estop.swap(false, Ordering::SeqCst) {
                            // E-STOP was pressed while this command waited: it belongs to what
                            // was queued before the stop.
                            self.emergency_stop(Some(cmd), &mut events)?;
                        } else {
                            self.handle(cmd, &mut events)?;
                        }
                        self.flush(&mut samples, &mut events);
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => {
                        if self.connected {
                            self.backend.disconnect();
                        }
                        return Ok(());
                    }
                },
                Ok(_) => {
                    let now_s = self.clock.now_s();
                    if let Err(e) = self.backend.service(now_s, &mut samples, &mut events) {
                        // What arrived before the link went goes in before the gap.
                        self.flush(&mut samples, &mut events);
                        self.lose(e, &mut events);
                    }
                    self.report_stop(&mut events);
                    self.flush(&mut samples, &mut events);
                }
                Err(_) => {}
            }
            if retrying && self.lost.as_ref().is_some_and(|l| Instant::now() >= l.next_try) {
                self.reconnect(&mut events)?;
                self.flush(&mut samples, &mut events);
            }
            // Polls are due whatever else is going on: a link that never falls silent or a
            // stream of commands must not hold up reply timeouts and watchdog feeds.
            if Instant::now() >= next_poll {
                if self.connected {
                    let now_s = self.clock.now_s();
                    if let Err(e) = self.backend.poll(now_s, &mut samples, &mut events) {
                        self.flush(&mut samples, &mut events);
                        self.lose(e, &mut events);
                    }
                    self.report_stop(&mut events);
                    let dropped = self.dropped.load(Ordering::Relaxed);
                    if dropped != reported_drops {
                        reported_drops = dropped;
                        events.push(Event::Dropped(dropped));
                    }
                    self.flush(&mut samples, &mut events);
                }
                let interval = self.backend.poll_interval();
                next_poll += interval;
                let now = Instant::now();
                if next_poll < now {
                    next_poll = now + interval;
                }
            }
        }
    }

    /// Once the E-STOP's bytes are out, says how long after the request.
    fn report_stop(&mut self, events: &mut Vec<Event>) {
        if !self.stop_pending {
            return;
        }
        if let Some(sent_s) = self.backend.take_stop_sent() {
            self.stop_pending = false;
            let requested_s = self.estop_at_us.load(Ordering::SeqCst) as f64 / 1e6;
            events.push(Event::EStopSent { latency_s: (sent_s - requested_s).max(0.0) });
        }
    }

    /// The drive stopped answering or its link failed: close it, mark the gap in its traces,
    /// and try to reconnect after a pause.
    fn lose(&mut self, reason: String, events: &mut Vec<Event>) {
        self.backend.disconnect();
        self.connected = false;
        let since_s = self.clock.now_s();
        if let Some(tap) = &self.tap {
            tap.store.lock().mark_gap(since_s);
        }
        events.push(Event::State(DriveState::LinkLost { since_s, reason }));
        self.lost =
            Some(LostLink { since_s, next_try: Instant::now() + RECONNECT_FIRST, pause: RECONNECT_FIRST });
    }

    /// Ends the link-lost interval in the drive's store (reconnected, or given up).
    fn close_gap(&self, now_s: f64) {
        if let Some(tap) = &self.tap {
            tap.store.lock().close_gap(now_s);
        }
    }

    /// One reconnection try. Success announces the drive as on a first connect and re-reads
    /// its state and parameters; nothing is enabled. Failure doubles the pause (up to
    /// [`RECONNECT_MAX`]).
    fn reconnect(&mut self, events: &mut Vec<Event>) -> Result<(), String> {
        let Some(lost) = &mut self.lost else { return Ok(()) };
        let now_s = self.clock.now_s();
        match self.backend.connect(now_s) {
            Ok(info) => {
                let gone_s = now_s - lost.since_s;
                self.lost = None;
                self.close_gap(now_s);
                self.connected = true;
                events
                    .push(Event::Log(format!("link back after {gone_s:.1} s; state and parameters re-read")));
                events.push(Event::Signals(info.signals));
                events.push(Event::Params(info.params));
                events.push(Event::State(DriveState::Idle));
                self.backend.command(&Command::ReadAllParams, now_s, events)?;
            }
            Err(e) => {
                lost.pause = (lost.pause * 2).min(RECONNECT_MAX);
                lost.next_try = Instant::now() + lost.pause;
                events.push(Event::Log(format!(
                    "reconnect failed: {e}; next try in {:.1} s",
                    lost.pause.as_secs_f64()
                )));
            }
        }
        Ok(())
    }

    /// Stops the drive before anything else, and throws away what was queued before the stop
    /// (an Enable or a setpoint sent just before E-STOP must not run after it). Connection
    /// changes still go through.
    fn emergency_stop(&mut self, taken: Option<Command>, events: &mut Vec<Event>) -> Result<(), String> {
        if self.connected {
            self.backend.command(&Command::EStop, self.clock.now_s(), events)?;
            self.stop_pending = true;
            self.report_stop(events);
        }
        let mut discarded = 0;
        let queued = std::iter::from_fn(|| self.commands.try_recv().ok());
        let before_stop: Vec<Command> = taken.into_iter().chain(queued).collect();
        for cmd in before_stop {
            match cmd {
                Command::Connect | Command::Disconnect => self.handle(cmd, events)?,
                Command::EStop => {}
                _ => discarded += 1,
            }
        }
        if self.connected {
            self.backend.command(&Command::EStop, self.clock.now_s(), events)?;
        }
        if discarded > 0 {
            events.push(Event::Refused(format!("E-STOP: {discarded} queued command(s) discarded")));
        }
        Ok(())
    }

    fn handle(&mut self, cmd: Command, events: &mut Vec<Event>) -> Result<(), String> {
        let now_s = self.clock.now_s();
        match cmd {
            Command::Connect if self.connected => {}
            Command::Connect if self.lost.is_some() => {
                // Reconnect now (the user pressed Reconnect); the pauses start over.
                if let Some(lost) = &mut self.lost {
                    lost.pause = RECONNECT_FIRST / 2;
                }
                self.reconnect(events)?;
            }
            Command::Connect => {
                events.push(Event::State(DriveState::Connecting));
                match self.backend.connect(now_s) {
                    Ok(info) => {
                        self.connected = true;
                        events.push(Event::Signals(info.signals));
                        events.push(Event::Params(info.params));
                        events.push(Event::State(DriveState::Idle));
                        self.backend.command(&Command::ReadAllParams, now_s, events)?;
                    }
                    Err(e) => {
                        events.push(Event::State(DriveState::Fault(format!("cannot connect: {e}"))));
                    }
                }
            }
            Command::Disconnect => {
                if self.lost.take().is_some() {
                    self.close_gap(now_s);
                }
                if self.connected {
                    self.backend.disconnect();
                    self.connected = false;
                }
                events.push(Event::State(DriveState::Disconnected));
            }
            cmd if !self.connected => {
                events.push(Event::Refused(format!("{}: the drive is not connected", cmd.describe())));
            }
            cmd => {
                if let Err(e) = self.backend.command(&cmd, now_s, events) {
                    events.push(Event::Refused(format!("{}: {e}", cmd.describe())));
                }
            }
        }
        Ok(())
    }

    /// Sends what accumulated without ever blocking. Control events (states, faults,
    /// parameter values) are never lost: if the consumer is behind they wait in order and go
    /// out first once there is room. Samples are dropped and counted instead.
    fn flush(&mut self, samples: &mut Vec<Sample>, events: &mut Vec<Event>) {
        let mut sent = false;
        let mut traffic = Vec::new();
        for mut ev in events.drain(..) {
            if let Event::Traffic(chunks) = ev {
                // Console traffic is a view, like samples: it goes after the control events.
                traffic.extend(chunks);
                continue;
            }
            if let (Event::Signals(signals), Some(tap)) = (&ev, &self.tap) {
                // From here on the drive's indices are the store's (a reconnect keeps them).
                ev = Event::Signals(tap.store.lock().set_signals(signals));
            }
            if let Event::Dropped(_) = ev {
                // Only the newest count matters.
                self.control.retain(|e| !matches!(e, Event::Dropped(_)));
            }
            self.control.push_back(ev);
        }
        if self.control.len() > MAX_PENDING_CONTROL {
            // Only a consumer gone for a very long time gets here; keep the newest.
            let excess = self.control.len() - MAX_PENDING_CONTROL;
            self.control.drain(..excess);
        }
        while let Some(ev) = self.control.pop_front() {
            match self.events.try_send(ev) {
                Ok(()) => sent = true,
                Err(e) => {
                    self.control.push_front(e.into_inner());
                    break;
                }
            }
        }
        if !traffic.is_empty()
            && self.control.is_empty()
            && self.events.try_send(Event::Traffic(traffic)).is_ok()
        {
            sent = true;
        }
        if let Some(tap) = self.tap.as_ref().filter(|_| !samples.is_empty()) {
            {
                let mut store = tap.store.lock();
                store.remap(samples);
                store.push(samples);
            }
            tap.hub.offer(tap.drive_id, samples);
            samples.clear();
            sent = true;
        }
        if !samples.is_empty() {
            let batch = std::mem::replace(samples, Vec::with_capacity(samples.capacity()));
            let n = batch.len() as u64;
            // Samples never overtake waiting control events.
            if self.control.is_empty() && self.events.try_send(Event::Samples(batch)).is_ok() {
                sent = true;
            } else {
                self.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
        if sent {
            self.request_repaint(false);
        }
    }

    fn request_repaint(&mut self, force: bool) {
        let Some(repaint) = &self.repaint else { return };
        let now = Instant::now();
        if force || self.last_repaint.is_none_or(|t| now.duration_since(t) >= REPAINT_INTERVAL) {
            self.last_repaint = Some(now);
            repaint();
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that panics on Enable, to prove isolation.
    struct Fragile;

    impl Backend for Fragile {
        fn connect(&mut self, _now_s: f64) -> Result<Connected, String> {
            Ok(Connected { signals: vec![SignalSpec::new("x", "")], params: vec![] })
        }
        fn disconnect(&mut self) {}
        fn command(&mut self, cmd: &Command, _now_s: f64, _events: &mut Vec<Event>) -> Result<(), String> {
            if *cmd == Command::Enable {
                panic!("boom in the codec");
            }
            Ok(())
        }
        fn poll(
            &mut self,
            now_s: f64,
            samples: &mut Vec<Sample>,
            _events: &mut Vec<Event>,
        ) -> Result<(), String> {
            samples.push(Sample { t_s: now_s, signal: 0, value: 1.0 });
            Ok(())
        }
    }

    fn wait_for(worker: &Worker, mut pred: impl FnMut(&Event) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(ev) = worker.events().recv_deadline(deadline) {
            if pred(&ev) {
                return true;
            }
        }
        false
    }

    /// A link that breaks on the first poll, refuses `refusals` reconnections, then works.
    struct Flaky {
        broken: bool,
        refusals: u32,
        connects: Arc<AtomicU64>,
    }

    impl Backend for Flaky {
        fn connect(&mut self, _now_s: f64) -> Result<Connected, String> {
            self.connects.fetch_add(1, Ordering::SeqCst);
            if self.broken && self.refusals > 0 {
                self.refusals -= 1;
                return Err("no such port".into());
            }
            Ok(Connected { signals: vec![SignalSpec::new("x", "")], params: vec![] })
        }
        fn disconnect(&mut self) {}
        fn command(&mut self, cmd: &Command, _now_s: f64, _events: &mut Vec<Event>) -> Result<(), String> {
            assert_ne!(*cmd, Command::Enable, "nobody asked to enable");
            Ok(())
        }
        fn poll(&mut self, _now_s: f64, _s: &mut Vec<Sample>, _e: &mut Vec<Event>) -> Result<(), String> {
            if !self.broken {
                self.broken = true;
                return Err("cable pulled".into());
            }
            Ok(())
        }
    }

    #[test]
    fn a_lost_link_is_retried_with_growing_pauses_and_comes_back_idle() {
        let connects = Arc::new(AtomicU64::new(0));
        let backend = Flaky { broken: false, refusals: 1, connects: connects.clone() };
        let w = Worker::spawn("flaky", Box::new(backend), Clock::new(), None, None);
        w.send(Command::Connect).unwrap();
        let lost_at = Instant::now();
        assert!(wait_for(
            &w,
            |e| matches!(e, Event::State(DriveState::LinkLost { reason, .. }) if reason == "cable pulled")
        ));
        assert!(wait_for(
            &w,
            |e| matches!(e, Event::Log(t) if t.contains("no such port; next try in 1.0 s"))
        ));
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::Idle))));
        // First try after 0.5 s, the second 1 s after that.
        assert!(lost_at.elapsed() >= Duration::from_millis(1400), "{:?}", lost_at.elapsed());
        assert_eq!(connects.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn without_auto_reconnect_a_lost_link_waits_for_the_user() {
        let connects = Arc::new(AtomicU64::new(0));
        let backend = Flaky { broken: false, refusals: 0, connects: connects.clone() };
        let w = Worker::spawn("flaky", Box::new(backend), Clock::new(), None, None);
        w.set_auto_reconnect(false);
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::LinkLost { .. }))));
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(connects.load(Ordering::SeqCst), 1, "no try of its own");
        // The Reconnect button still works.
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::Idle))));
        assert_eq!(connects.load(Ordering::SeqCst), 2);
        // Switched on while the link is lost: the retries start.
        let backend = Flaky { broken: false, refusals: 0, connects: connects.clone() };
        let w = Worker::spawn("flaky", Box::new(backend), Clock::new(), None, None);
        w.set_auto_reconnect(false);
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::LinkLost { .. }))));
        w.set_auto_reconnect(true);
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::Idle))));
        assert_eq!(connects.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn reconnect_tries_at_once_when_asked() {
        let connects = Arc::new(AtomicU64::new(0));
        let backend = Flaky { broken: false, refusals: 100, connects: connects.clone() };
        let w = Worker::spawn("flaky", Box::new(backend), Clock::new(), None, None);
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::LinkLost { .. }))));
        let before = connects.load(Ordering::SeqCst);
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::Log(t) if t.contains("reconnect failed"))));
        assert_eq!(connects.load(Ordering::SeqCst), before + 1);
        // Disconnect ends the retries.
        w.send(Command::Disconnect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::State(DriveState::Disconnected))));
        let after = connects.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(connects.load(Ordering::SeqCst), after);
    }

    #[test]
    fn panic_in_backend_becomes_a_fault() {
        let w = Worker::spawn("fragile", Box::new(Fragile), Clock::new(), None, None);
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::Samples(_))));
        w.send(Command::Enable).unwrap();
        assert!(wait_for(
            &w,
            |e| matches!(e, Event::State(DriveState::Fault(t)) if t.contains("boom in the codec"))
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !w.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(w.is_finished());
        assert_eq!(w.send(Command::Disable), Err(SendError::Stopped));
    }

    #[test]
    fn commands_before_connect_are_refused() {
        let w = Worker::spawn("idle", Box::new(Fragile), Clock::new(), None, None);
        w.send(Command::Enable).unwrap();
        assert!(wait_for(&w, |e| matches!(e, Event::Refused(t) if t.contains("not connected"))));
        w.shutdown();
    }

    /// A backend whose polls are a closure, polled every 200 µs: for flooding the event queue.
    struct Polled<F>(F);

    impl<F: FnMut(f64, &mut Vec<Sample>, &mut Vec<Event>) + Send> Backend for Polled<F> {
        fn connect(&mut self, _now_s: f64) -> Result<Connected, String> {
            Ok(Connected { signals: vec![SignalSpec::new("x", "")], params: vec![] })
        }
        fn disconnect(&mut self) {}
        fn command(&mut self, _cmd: &Command, _now_s: f64, _events: &mut Vec<Event>) -> Result<(), String> {
            Ok(())
        }
        fn poll(
            &mut self,
            now_s: f64,
            samples: &mut Vec<Sample>,
            events: &mut Vec<Event>,
        ) -> Result<(), String> {
            (self.0)(now_s, samples, events);
            Ok(())
        }
        fn poll_interval(&self) -> Duration {
            Duration::from_micros(200)
        }
    }

    #[test]
    fn slow_consumer_loses_only_counted_samples() {
        let produced = Arc::new(AtomicU64::new(0));
        let counter = produced.clone();
        let flood = Polled(move |now_s: f64, samples: &mut Vec<Sample>, _: &mut Vec<Event>| {
            samples.extend((0..10).map(|_| Sample { t_s: now_s, signal: 0, value: 1.0 }));
            counter.fetch_add(10, Ordering::SeqCst);
        });
        let w = Worker::spawn("flood", Box::new(flood), Clock::new(), None, None);
        w.send(Command::Connect).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while w.dropped() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(w.dropped() > 0, "the queue never filled");
        let events = w.events().clone();
        let dropped = w.dropped.clone();
        w.shutdown();
        let received: u64 =
            events.try_iter().map(|e| if let Event::Samples(s) = e { s.len() as u64 } else { 0 }).sum();
        // Every sample is either delivered or counted as dropped: nothing vanishes silently.
        assert_eq!(received + dropped.load(Ordering::SeqCst), produced.load(Ordering::SeqCst));
        assert!(received >= (EVENT_CAPACITY as u64 / 2) * 10, "received {received}");
    }

    /// Slow to carry out setpoints; records when it saw an e-stop and how many setpoints it
    /// had handled by then.
    struct Sluggish(Arc<std::sync::Mutex<Option<(Instant, usize)>>>, Arc<AtomicU64>);

    impl Backend for Sluggish {
        fn connect(&mut self, _now_s: f64) -> Result<Connected, String> {
            Ok(Connected { signals: vec![], params: vec![] })
        }
        fn disconnect(&mut self) {}
        fn command(&mut self, cmd: &Command, _now_s: f64, _events: &mut Vec<Event>) -> Result<(), String> {
            match cmd {
                Command::SetSetpoint(..) => {
                    self.1.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
                Command::EStop => {
                    let mut seen = self.0.lock().unwrap();
                    seen.get_or_insert((Instant::now(), self.1.load(Ordering::SeqCst) as usize));
                }
                _ => {}
            }
            Ok(())
        }
        fn poll(&mut self, _now_s: f64, _s: &mut Vec<Sample>, _e: &mut Vec<Event>) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn estop_overtakes_a_full_command_queue() {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let handled_total = Arc::new(AtomicU64::new(0));
        let backend = Sluggish(seen.clone(), handled_total.clone());
        let w = Worker::spawn("sluggish", Box::new(backend), Clock::new(), None, None);
        w.send(Command::Connect).unwrap();
        assert!(wait_for(&w, |e| *e == Event::State(DriveState::Idle)));
        // Fill the queue: at 20 ms each, working through it takes over a second.
        let mut queued = 0;
        while w.send(Command::SetSetpoint(crate::drive::ControlMode::Speed, 1.0)).is_ok() {
            queued += 1;
        }
        assert!(queued >= COMMAND_CAPACITY - 1, "queued {queued}");
        assert_eq!(w.send(Command::Disable), Err(SendError::Busy));
        let pressed = Instant::now();
        w.estop();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (at, handled) = seen.lock().unwrap().expect("the e-stop never reached the backend");
        assert!(
            at.duration_since(pressed) < Duration::from_millis(500),
            "took {:?}",
            at.duration_since(pressed)
        );
        assert!(handled < 10, "the e-stop waited behind {handled} queued setpoints");
        assert!(wait_for(&w, |e| matches!(e, Event::Refused(t) if t.contains("discarded"))));
        // The queued setpoints were thrown away, not run after the stop.
        std::thread::sleep(Duration::from_millis(200));
        assert!(handled_total.load(Ordering::SeqCst) < 10, "queued setpoints ran after the stop");
    }

    #[test]
    fn a_fault_is_not_lost_while_the_consumer_is_behind() {
        // Floods samples; raises a fault once the test says the queue is full.
        let raise = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let raised = Arc::new(AtomicU64::new(0));
        let (raise_in, raised_in) = (raise.clone(), raised.clone());
        let backend = Polled(move |now_s: f64, samples: &mut Vec<Sample>, events: &mut Vec<Event>| {
            samples.push(Sample { t_s: now_s, signal: 0, value: 1.0 });
            if raise_in.load(Ordering::SeqCst) && raised_in.fetch_add(1, Ordering::SeqCst) == 0 {
                events.push(Event::State(DriveState::Fault("over-temperature".into())));
            }
        });
        let w = Worker::spawn("behind", Box::new(backend), Clock::new(), None, None);
        w.send(Command::Connect).unwrap();
        // Nobody reads: wait for the queue to be full, raise the fault, let more samples drop.
        let deadline = Instant::now() + Duration::from_secs(60);
        while w.dropped() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        raise.store(true, Ordering::SeqCst);
        while (raised.load(Ordering::SeqCst) < 20 || w.dropped() < 20) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(raised.load(Ordering::SeqCst) >= 20, "the fault was raised behind a full queue");
        assert!(
            wait_for(&w, |e| matches!(e, Event::State(DriveState::Fault(t)) if t == "over-temperature")),
            "the fault never arrived"
        );
        w.shutdown();
    }

    /// A backend whose link never falls silent: its input channel always holds a chunk.
    struct Chatty {
        rx: Receiver<LinkInput>,
        tx: Sender<LinkInput>,
        polls: Arc<AtomicU64>,
    }

    impl Backend for Chatty {
        fn connect(&mut self, _now_s: f64) -> Result<Connected, String> {
            let _ = self.tx.try_send(LinkInput::Bytes { t_s: 0.0, bytes: vec![0] });
            Ok(Connected { signals: vec![SignalSpec::new("x", "")], params: vec![] })
        }
        fn disconnect(&mut self) {}
        fn command(&mut self, _cmd: &Command, _now_s: f64, _events: &mut Vec<Event>) -> Result<(), String> {
            Ok(())
        }
        fn poll(&mut self, _now_s: f64, _s: &mut Vec<Sample>, _e: &mut Vec<Event>) -> Result<(), String> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn input(&self) -> Option<Receiver<LinkInput>> {
            Some(self.rx.clone())
        }
        fn service(&mut self, _now_s: f64, _s: &mut Vec<Sample>, _e: &mut Vec<Event>) -> Result<(), String> {
            // Take one chunk and another arrives at once.
            let _ = self.rx.try_recv();
            let _ = self.tx.try_send(LinkInput::Bytes { t_s: 0.0, bytes: vec![0] });
            Ok(())
        }
    }

    #[test]
    fn steady_input_does_not_starve_the_polls() {
        let (tx, rx) = bounded(4);
        let polls = Arc::new(AtomicU64::new(0));
        let w = Worker::spawn(
            "chatty",
            Box::new(Chatty { rx, tx, polls: polls.clone() }),
            Clock::new(),
            None,
            None,
        );
        w.send(Command::Connect).unwrap();
        // Timeouts and watchdog feeds live in the polls: at 10 ms they must keep coming.
        let deadline = Instant::now() + Duration::from_secs(10);
        while polls.load(Ordering::Relaxed) < 20 {
            assert!(
                Instant::now() < deadline,
                "only {} polls while input never stopped",
                polls.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        w.shutdown();
    }
}
