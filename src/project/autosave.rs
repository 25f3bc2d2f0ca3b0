//! Autosave of unsaved changes: while the bench differs from its saved project, a copy is
//! written every half minute to the state directory (`autosave.ron`); a clean exit or a save
//! removes it. If drivebench finds one at start, it did not close cleanly, and the bench is
//! offered back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Project, ProjectError};

/// Autosaved bench: the project, the file it came from (if any), and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autosave {
    /// Wall-clock time (RFC 3339, UTC) of the autosave.
    pub saved_at: String,
    /// The project file the bench was opened from, if it was.
    pub path: Option<PathBuf>,
    pub project: Project,
}

/// The autosave file in `dir`.
pub fn autosave_path(dir: &Path) -> PathBuf {
    dir.join("autosave.ron")
}

impl Autosave {
    pub fn new(project: Project, path: Option<PathBuf>) -> Self {
        let saved_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Autosave { saved_at, path, project }
    }

    /// Writes atomically into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ProjectError> {
        let target = autosave_path(dir);
        std::fs::create_dir_all(dir)
            .map_err(|source| ProjectError::Write { path: target.clone(), source })?;
        let pretty = ron::ser::PrettyConfig::new().depth_limit(7).struct_names(true);
        let text =
            ron::ser::to_string_pretty(self, pretty).map_err(|e| ProjectError::Serialise(e.to_string()))?;
        let tmp = dir.join(format!(".autosave.ron.tmp-{}", std::process::id()));
        let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(source) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(ProjectError::Write { path: target, source });
        }
        Ok(())
    }

    /// The autosave in `dir`, if there is a readable one. An unreadable one is reported, so it
    /// can be removed instead of being offered forever.
    pub fn read(dir: &Path) -> Option<Result<Autosave, ProjectError>> {
        let path = autosave_path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(source) => return Some(Err(ProjectError::Read { path, source })),
        };
        let parsed: Result<Autosave, _> = ron::Options::default().from_str(&text);
        Some(match parsed {
            Ok(a) => match a.project.validate() {
                Ok(()) => Ok(a),
                Err(message) => Err(ProjectError::Invalid { path, message }),
            },
            Err(e) => Err(ProjectError::Syntax {
                path,
                line: e.span.start.line,
                col: e.span.start.col,
                message: e.code.to_string(),
            }),
        })
    }

    /// Removes the autosave (after a clean exit, a save, or the user's "Discard").
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(autosave_path(dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_autosave_round_trips_and_a_broken_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Autosave::read(dir.path()).is_none());
        let a = Autosave::new(Project::demo(), Some(PathBuf::from("/benches/rig.ron")));
        a.write(dir.path()).unwrap();
        assert_eq!(Autosave::read(dir.path()).unwrap().unwrap(), a);
        std::fs::write(autosave_path(dir.path()), "Autosave(saved_at: 3").unwrap();
        assert!(Autosave::read(dir.path()).unwrap().is_err());
        Autosave::remove(dir.path());
        assert!(Autosave::read(dir.path()).is_none());
    }
}
