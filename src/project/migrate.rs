//! Files of earlier format versions. Each older version keeps a frozen copy of the types that
//! changed after it (checked as strictly as the current ones: an unknown field is still an
//! error with its position) and one function that turns it into the current format. A
//! migration changes nothing on disk: the converted project is written, as the current
//! version, only when the user saves (the old file is then kept as `NAME.ron.bak`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    Connection, DriveConfig, History, PROJECT_VERSION, PlotLayout, Project, ProjectError, syntax_error,
};
use crate::drive::{ControlMode, Limits};

/// What a load had to convert.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The version found in the file.
    pub from: u32,
    /// What changed, one line each, for the user.
    pub notes: Vec<String>,
}

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "written in project format version {}; converted to version {PROJECT_VERSION}, which drivebench \
             writes when you save (drivebench builds that read only version {} cannot open the saved file; \
             the file before the save is kept as NAME.ron.bak)",
            self.from, self.from
        )?;
        for note in &self.notes {
            write!(f, "\n• {note}")?;
        }
        Ok(())
    }
}

/// Reads `text`, which says it is version `version` (older than [`PROJECT_VERSION`]).
pub(super) fn from_old(text: &str, version: u32, path: &Path) -> Result<(Project, Migration), ProjectError> {
    match version {
        1 => {
            let old: v1::Project =
                ron::Options::default().from_str(text).map_err(|e| syntax_error(path, e))?;
            Ok(v1::upgrade(old))
        }
        found => {
            Err(ProjectError::UnknownVersion { path: path.to_owned(), found, supported: PROJECT_VERSION })
        }
    }
}

/// Version 1: written by drivebench up to the scope tools (whose right value axis and trigger
/// settings it already carried, optional). Version 2 adds `auto_reconnect` per drive and makes
/// the version number tell older builds that they cannot read the right axis and trigger.
mod v1 {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename = "Project", default, deny_unknown_fields)]
    pub struct Project {
        pub version: u32,
        pub drives: Vec<DriveConfig>,
        pub plot: PlotLayout,
        pub history: History,
    }

    impl Default for Project {
        fn default() -> Self {
            Project {
                version: 1,
                drives: Vec::new(),
                plot: PlotLayout::default(),
                history: History::default(),
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename = "DriveConfig", default, deny_unknown_fields)]
    pub struct DriveConfig {
        pub name: String,
        pub connection: Connection,
        pub limits: Limits,
        pub params: BTreeMap<String, f64>,
        pub mode: ControlMode,
    }

    impl Default for DriveConfig {
        fn default() -> Self {
            let now = super::DriveConfig::default();
            DriveConfig {
                name: now.name,
                connection: now.connection,
                limits: now.limits,
                params: now.params,
                mode: now.mode,
            }
        }
    }

    pub fn upgrade(old: Project) -> (super::Project, Migration) {
        let mut notes = Vec::new();
        let drives: Vec<super::DriveConfig> = old
            .drives
            .into_iter()
            .map(|d| super::DriveConfig {
                name: d.name,
                connection: d.connection,
                limits: d.limits,
                params: d.params,
                mode: d.mode,
                // What version 1 builds did once they could reconnect.
                auto_reconnect: true,
            })
            .collect();
        if drives.iter().any(|d| d.connection.serial().is_some()) {
            notes.push(
                "serial drives reconnect by themselves after a lost link (`auto_reconnect`, on)".into(),
            );
        }
        let project =
            super::Project { version: PROJECT_VERSION, drives, plot: old.plot, history: old.history };
        (project, Migration { from: 1, notes })
    }
}
