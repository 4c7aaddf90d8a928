//! The config file: TOML read into raw values per setting plus the
//! `[[route]]` tables, each key checked against [`SETTINGS`] as it is met.
//!
//! # Why the tables are walked by hand, not with serde
//!
//! serde derive with `deny_unknown_fields` was tried on a section. toml's
//! errors then give a line and column but not the key path
//! (`invalid type: string "many", expected u32`: no `server.backlog`, and a
//! Rust type where `an integer` is meant); an unknown key lists every
//! field instead of naming the section and file; a size (integer or
//! string) or a duration (`0` or string) needs a `deserialize_with` per
//! field to keep the value parsers' messages; and the derived struct would
//! declare every key a second time beside [`SETTINGS`], which also derives
//! the key's flag, environment variable, `--help` and check-config line and
//! records where each value came from. Walking `toml::Table` keeps one
//! declaration per key and one-line errors that name the key path, the
//! file, the value and what is allowed.

use std::path::Path;

use super::load::{ConfigError, one_line, type_error};
use super::settings::SETTINGS;
use super::value::Raw;

/// The config file, split into setting values and raw `[[route]]` tables.
pub(super) struct FileDoc {
    pub(super) name: String,
    /// The file's value of each setting, parallel to [`SETTINGS`].
    pub(super) settings: Vec<Option<Raw>>,
    pub(super) routes: Vec<toml::Table>,
}

pub(super) fn load_file(path: &Path) -> Result<FileDoc, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {name}: {e}")))?;
    parse_file(name, &text)
}

/// A config file's text, read as [`load_file`] reads a file; `name` stands
/// for the file in errors.
pub(super) fn parse_file(name: String, text: &str) -> Result<FileDoc, ConfigError> {
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| syntax_error(&name, text, &e))?;
    split_file(name, table)
}
fn syntax_error(name: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or_else(String::new, |span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line} column {column}")
    });
    let message = one_line(e.message());
    ConfigError(format!("cannot parse config file {name}{at}: {message}"))
}

fn split_file(name: String, table: toml::Table) -> Result<FileDoc, ConfigError> {
    let settings = SETTINGS.iter().map(|_| None).collect();
    let mut doc = FileDoc {
        name,
        settings,
        routes: Vec::new(),
    };
    for (key, value) in table {
        if key == "route" {
            doc.routes = route_tables(&doc.name, value)?;
        } else if is_section(&key) {
            let toml::Value::Table(inner) = value else {
                return Err(type_error(&key, &doc.name, &value, "a table"));
            };
            for (sub, value) in inner {
                doc.put(&format!("{key}.{sub}"), &value)?;
            }
        } else {
            doc.put(&key, &value)?;
        }
    }
    Ok(doc)
}

fn is_section(name: &str) -> bool {
    SETTINGS.iter().any(|s| {
        s.key
            .split_once('.')
            .is_some_and(|(section, _)| section == name)
    })
}

impl FileDoc {
    fn put(&mut self, key: &str, value: &toml::Value) -> Result<(), ConfigError> {
        let found = SETTINGS
            .iter()
            .zip(self.settings.iter_mut())
            .find(|(s, _)| s.key == key);
        let Some((setting, slot)) = found else {
            let file = &self.name;
            return Err(ConfigError(format!(
                "unknown key {key} in config file {file}"
            )));
        };
        let expected = setting.kind.toml_type();
        *slot = Some(
            Raw::from_toml(setting.kind, value)
                .ok_or_else(|| type_error(key, &self.name, value, expected))?,
        );
        Ok(())
    }
}

fn route_tables(file: &str, value: toml::Value) -> Result<Vec<toml::Table>, ConfigError> {
    let toml::Value::Array(items) = value else {
        return Err(type_error("route", file, &value, "[[route]] tables"));
    };
    let table = |(i, v): (usize, toml::Value)| match v {
        toml::Value::Table(t) => Ok(t),
        other => Err(type_error(&format!("route[{i}]"), file, &other, "a table")),
    };
    items.into_iter().enumerate().map(table).collect()
}
