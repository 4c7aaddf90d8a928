//! A table of the config file below the top level: a `[[route]]`, one of
//! its `[[route.group]]` tables, or an endpoint of a group. Values are read
//! key by key, and every error names the key by its path in the file
//! (`route[0].upstream`, `route[0].group[1].endpoints[2].weight`) and the
//! file.

use super::load::{ConfigError, Parser, Source, invalid, type_error};
use super::value::{Kind, Raw};

/// One table of the file and its path.
pub(super) struct FileTable<'a> {
    /// `route[0]`, `route[0].group[1]`, `route[0].group[1].endpoints[2]`.
    path: String,
    pub(super) table: &'a toml::Table,
    pub(super) file: &'a str,
}

impl<'a> FileTable<'a> {
    pub(super) fn new(path: String, table: &'a toml::Table, file: &'a str) -> Self {
        Self { path, table, file }
    }

    /// The table's own path (`route[0].group[1]`).
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` in this table.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    pub(super) fn source(&self) -> Source {
        Source::File(self.file.to_owned())
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Refuses the first key `known` does not accept; `expected` lists the
    /// keys allowed, when the error should say.
    pub(super) fn check_keys(
        &self,
        known: impl Fn(&str) -> bool,
        expected: Option<&str>,
    ) -> Result<(), ConfigError> {
        let Some(unknown) = self.table.keys().find(|k| !known(k)) else {
            return Ok(());
        };
        let hint = expected.map_or_else(String::new, |e| format!(": expected {e}"));
        Err(ConfigError(format!(
            "unknown key {} in config file {}{hint}",
            self.key(unknown),
            self.file
        )))
    }

    /// `key` is required and absent.
    pub(super) fn missing(&self, key: &str, expected: &str) -> ConfigError {
        ConfigError(format!(
            "missing key {} in config file {}: expected {expected}",
            self.key(key),
            self.file
        ))
    }

    /// `a` and `b` say the same thing two ways.
    pub(super) fn one_form(&self, a: &str, b: &str) -> ConfigError {
        ConfigError(format!(
            "{} and {} are both set in config file {}: use one form",
            self.key(a),
            self.key(b),
            self.file
        ))
    }

    /// `key` is set without `needed`, which gives it its meaning.
    pub(super) fn needs(&self, key: &str, needed: &str) -> ConfigError {
        let (key, needed) = (self.key(key), self.key(needed));
        ConfigError(format!(
            "{key} is set but {needed} is not in config file {}: set both or neither",
            self.file
        ))
    }

    pub(super) fn string<T>(&self, key: &str, parse: Parser<T>) -> Result<Option<T>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => parse(s)
                .map(Some)
                .map_err(|why| invalid(&self.key(key), &self.source(), s, &why)),
            Some(other) => Err(type_error(&self.key(key), self.file, other, "a string")),
        }
    }

    pub(super) fn integer(
        &self,
        key: &str,
        min: u32,
        max: u32,
    ) -> Result<Option<u32>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => u32::try_from(*n)
                .ok()
                .filter(|n| (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    let why = format!("expected a whole number from {min} to {max}");
                    invalid(&self.key(key), &self.source(), &n.to_string(), &why)
                }),
            Some(other) => Err(type_error(&self.key(key), self.file, other, "an integer")),
        }
    }

    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(type_error(
                &self.key(key),
                self.file,
                other,
                "a boolean (true or false)",
            )),
        }
    }

    /// The value of `key` as text, when its TOML type fits a setting of
    /// `kind` (a duration may be the integer `0`, a size an integer).
    pub(super) fn text(&self, key: &str, kind: Kind) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.table.get(key) else {
            return Ok(None);
        };
        match Raw::from_toml(kind, value) {
            Some(Raw::One(s)) => Ok(Some(s)),
            _ => Err(type_error(
                &self.key(key),
                self.file,
                value,
                kind.toml_type(),
            )),
        }
    }

    /// The tables of the array `key` (`[[route.group]]`, or an array of
    /// inline tables), each named `<key>[i]`; `None` when `key` is absent.
    pub(super) fn tables(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Option<Vec<FileTable<'a>>>, ConfigError> {
        let Some(value) = self.table.get(key) else {
            return Ok(None);
        };
        let toml::Value::Array(items) = value else {
            return Err(type_error(&self.key(key), self.file, value, expected));
        };
        let table = |(i, item): (usize, &'a toml::Value)| {
            let path = self.key(&format!("{key}[{i}]"));
            match item {
                toml::Value::Table(t) => Ok(FileTable::new(path, t, self.file)),
                other => Err(type_error(&path, self.file, other, "a table")),
            }
        };
        items
            .iter()
            .enumerate()
            .map(table)
            .collect::<Result<_, _>>()
            .map(Some)
    }
}
