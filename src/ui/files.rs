//! File dialogs off the UI thread: a blocking `rfd` dialog runs on its own thread and sends
//! the chosen path back, so the plots keep running while the dialog is open.

use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender, bounded};

/// What the File menu asks the app to do.
#[derive(Debug, Clone, PartialEq)]
pub enum FileAction {
    New,
    OpenDialog,
    SaveAsDialog,
    Save,
    Open(PathBuf),
    SaveAs(PathBuf),
    /// Record into a file chosen in a dialog.
    RecordToDialog,
    RecordTo(PathBuf),
    OpenRecordingDialog,
    OpenRecording(PathBuf),
}

pub struct FileDialogs {
    tx: Sender<Option<FileAction>>,
    rx: Receiver<Option<FileAction>>,
    open: bool,
}

impl Default for FileDialogs {
    fn default() -> Self {
        let (tx, rx) = bounded(4);
        FileDialogs { tx, rx, open: false }
    }
}

impl FileDialogs {
    /// The path chosen in a dialog that has closed, if any.
    pub fn poll(&mut self) -> Option<FileAction> {
        let result = self.rx.try_recv().ok()?;
        self.open = false;
        result
    }

    pub fn open_dialog(&mut self) {
        self.spawn(|| {
            rfd::FileDialog::new()
                .set_title("Open drivebench project")
                .add_filter("drivebench project", &["ron"])
                .pick_file()
                .map(FileAction::Open)
        });
    }

    pub fn save_as_dialog(&mut self) {
        self.spawn(|| {
            rfd::FileDialog::new()
                .set_title("Save drivebench project")
                .add_filter("drivebench project", &["ron"])
                .set_file_name("bench.ron")
                .save_file()
                .map(|p| if p.extension().is_none() { p.with_extension("ron") } else { p })
                .map(FileAction::SaveAs)
        });
    }

    pub fn record_to_dialog(&mut self, suggested: String) {
        self.spawn(move || {
            rfd::FileDialog::new()
                .set_title("Record to")
                .add_filter("CSV", &["csv"])
                .set_file_name(suggested)
                .save_file()
                .map(|p| if p.extension().is_none() { p.with_extension("csv") } else { p })
                .map(FileAction::RecordTo)
        });
    }

    pub fn open_recording_dialog(&mut self) {
        self.spawn(|| {
            rfd::FileDialog::new()
                .set_title("Open recording")
                .add_filter("drivebench recording", &["csv"])
                .pick_file()
                .map(FileAction::OpenRecording)
        });
    }

    fn spawn(&mut self, dialog: impl FnOnce() -> Option<FileAction> + Send + 'static) {
        if self.open {
            return;
        }
        self.open = true;
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new().name("file-dialog".into()).spawn(move || {
            // A cancelled (or crashed) dialog sends `None`, which re-arms the dialogs.
            let chosen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(dialog)).ok().flatten();
            let _ = tx.send(chosen);
        });
        if spawned.is_err() {
            self.open = false;
        }
    }
}
