//! A hand-walked TOML reader that records every problem with its key path instead of stopping
//! at the first one (as serde derive would), so an operator fixes a config in one round trip.
//!
//! Values come from `toml::de::DeTable`, which keeps the byte span of every key and value;
//! errors carry the span start so they can be reported in file order even though the
//! table itself is sorted by key.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::load::{ConfigError, Environment};
use super::secret::Secret;

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// State shared by every section of one load: the errors so far and where secrets and
/// relative paths are resolved.
pub(super) struct Ctx<'e> {
    errors: RefCell<Vec<(usize, ConfigError)>>,
    pub(super) env: &'e dyn Environment,
    base_dir: &'e Path,
}

/// A value read from a list, with the path and position its errors should carry.
pub(super) struct Item<T> {
    pub path: String,
    pub pos: usize,
    pub value: T,
}

impl<'e> Ctx<'e> {
    pub fn new(env: &'e dyn Environment, base_dir: &'e Path) -> Ctx<'e> {
        Ctx {
            errors: RefCell::new(Vec::new()),
            env,
            base_dir,
        }
    }

    /// Records an error; `pos` is the byte offset it is sorted by.
    pub fn error(&self, pos: usize, path: impl Into<String>, message: impl Into<String>) {
        let error = ConfigError {
            path: path.into(),
            message: message.into(),
        };
        self.errors.borrow_mut().push((pos, error));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// Every error, in file order (errors at the same place keep the order they were found).
    pub fn into_errors(self) -> Vec<ConfigError> {
        let mut errors = self.errors.into_inner();
        errors.sort_by_key(|(pos, _)| *pos);
        errors.into_iter().map(|(_, e)| e).collect()
    }

    pub fn resolve_path(&self, path: &str) -> PathBuf {
        self.base_dir.join(path)
    }

    /// A non-negative integer value, or an error at `path`.
    pub fn non_negative(&self, path: &str, value: &Value<'_>) -> Option<u64> {
        let pos = value.span().start;
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n >= 0 => Some(n.unsigned_abs()),
                Ok(_) => {
                    self.error(pos, path, "must not be negative");
                    None
                }
                Err(_) => {
                    self.error(pos, path, "integer out of range");
                    None
                }
            },
            other => {
                let msg = format!("expected an integer, found {}", type_name(other));
                self.error(pos, path, msg);
                None
            }
        }
    }
}

/// One TOML table being read. Every key asked for is remembered, so `finish` can report the
/// keys nobody asked for and list the ones that are expected.
pub(super) struct Section<'a, 'i> {
    ctx: &'a Ctx<'a>,
    path: String,
    table: &'a DeTable<'i>,
    /// Where errors about the table as a whole (missing keys) are sorted.
    pos: usize,
    expected: Vec<&'static str>,
    consumed: Vec<&'static str>,
}

impl<'a, 'i> Section<'a, 'i> {
    pub fn new(ctx: &'a Ctx<'a>, path: String, table: &'a DeTable<'i>, pos: usize) -> Self {
        Section {
            ctx,
            path,
            table,
            pos,
            expected: Vec::new(),
            consumed: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn ctx(&self) -> &'a Ctx<'a> {
        self.ctx
    }

    pub fn key_path(&self, key: &str) -> String {
        join_key(&self.path, key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn take(&mut self, key: &'static str) -> Option<&'a Value<'i>> {
        if !self.expected.contains(&key) {
            self.expected.push(key);
        }
        self.skip(key);
        self.table.get(key)
    }

    /// The length of an array value; None if the key is absent or not an array.
    pub fn array_len(&self, key: &str) -> Option<usize> {
        match self.table.get(key).map(Spanned::get_ref) {
            Some(DeValue::Array(items)) => Some(items.len()),
            _ => None,
        }
    }

    /// Marks a key as handled without listing it as expected here (e.g. a key that belongs
    /// to another format, already reported).
    pub fn skip(&mut self, key: &'static str) {
        if !self.consumed.contains(&key) {
            self.consumed.push(key);
        }
    }

    /// Reports a problem with a key's value, at the key's place in the file.
    pub fn invalid(&self, key: &str, message: impl Into<String>) {
        let pos = self.table.get(key).map_or(self.pos, |v| v.span().start);
        self.ctx.error(pos, self.key_path(key), message);
    }

    fn missing(&self, key: &str) {
        self.ctx
            .error(self.pos, self.key_path(key), "missing required key");
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &Value<'_>) {
        let found = type_name(found.get_ref());
        self.invalid(key, format!("expected {expected}, found {found}"));
    }

    pub fn optional_str(&mut self, key: &'static str) -> Option<String> {
        let value = self.take(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(key, "a string", value);
                None
            }
        }
    }

    pub fn required_str(&mut self, key: &'static str) -> Option<String> {
        if !self.has(key) {
            self.take(key);
            self.missing(key);
            return None;
        }
        self.optional_str(key)
    }

    pub fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.take(key) {
            None => default,
            Some(value) => match value.get_ref() {
                DeValue::Boolean(b) => *b,
                _ => {
                    self.wrong_type(key, "true or false", value);
                    default
                }
            },
        }
    }

    /// A non-negative integer.
    pub fn integer(&mut self, key: &'static str, default: u64) -> u64 {
        self.optional_integer(key).unwrap_or(default)
    }

    /// A non-negative integer; None when absent (or reported as invalid).
    pub fn optional_integer(&mut self, key: &'static str) -> Option<u64> {
        let value = self.take(key)?;
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n >= 0 => Some(n.unsigned_abs()),
                Ok(_) => {
                    self.invalid(key, "must not be negative");
                    None
                }
                Err(_) => {
                    self.invalid(key, "integer out of range");
                    None
                }
            },
            _ => {
                self.wrong_type(key, "an integer", value);
                None
            }
        }
    }

    /// A duration such as "30s", "5m", "7d" or "1h 30m".
    pub fn duration(&mut self, key: &'static str, default: Duration) -> Duration {
        let Some(value) = self.take(key) else {
            return default;
        };
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(key, "a duration string like \"30s\"", value);
            return default;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(_) => {
                let msg =
                    format!("invalid duration \"{s}\" (expected e.g. \"30s\", \"5m\", \"7d\")");
                self.invalid(key, msg);
                default
            }
        }
    }

    /// A byte count: an integer, or a string like "512KiB", "1MiB", "10MB".
    pub fn size(&mut self, key: &'static str, default: u64) -> u64 {
        let Some(value) = self.take(key) else {
            return default;
        };
        match value.get_ref() {
            DeValue::Integer(_) => self.integer(key, default),
            DeValue::String(s) => parse_size(s).unwrap_or_else(|| {
                let msg =
                    format!("invalid size \"{s}\" (expected e.g. 1048576, \"512KiB\", \"1MiB\")");
                self.invalid(key, msg);
                default
            }),
            _ => {
                self.wrong_type(key, "a size like \"1MiB\" or an integer", value);
                default
            }
        }
    }

    pub fn string_list(&mut self, key: &'static str) -> Vec<String> {
        let Some(value) = self.take(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of strings", value);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    let msg = format!("expected a string, found {}", type_name(other));
                    let path = format!("{}[{i}]", self.key_path(key));
                    self.ctx.error(item.span().start, path, msg);
                }
            }
        }
        out
    }

    /// The items of an array, each with its own key path (`key[i]`), for lists whose items
    /// take several forms. Not an array: reported, empty.
    pub fn list_items(&mut self, key: &'static str) -> Vec<(String, &'a Value<'i>)> {
        let Some(value) = self.take(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array", value);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{}[{i}]", self.key_path(key)), item))
            .collect()
    }

    /// An array of non-negative integers (ids).
    pub fn integer_list(&mut self, key: &'static str, default: &[u64]) -> Vec<u64> {
        let Some(value) = self.take(key) else {
            return default.to_vec();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of integers", value);
            return default.to_vec();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(key));
            if let Some(n) = self.ctx.non_negative(&path, item) {
                out.push(n);
            }
        }
        out
    }

    pub fn optional_secret(&mut self, key: &'static str) -> Option<Secret> {
        let value = self.take(key)?;
        self.ctx.secret(&self.key_path(key), value)
    }

    pub fn secret(&mut self, key: &'static str) -> Option<Secret> {
        if !self.has(key) {
            self.take(key);
            self.missing(key);
            return None;
        }
        self.optional_secret(key)
    }

    /// A required, non-empty array of secrets. Items that fail to resolve are reported and
    /// left out.
    pub fn secret_list(&mut self, key: &'static str) -> Vec<Item<Secret>> {
        let Some(value) = self.take(key) else {
            self.missing(key);
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of secrets", value);
            return Vec::new();
        };
        if items.is_empty() {
            self.invalid(key, "at least one secret is required");
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(key));
            if let Some(secret) = self.ctx.secret(&path, item) {
                let pos = item.span().start;
                out.push(Item {
                    path,
                    pos,
                    value: secret,
                });
            }
        }
        out
    }

    pub fn subsection(&mut self, key: &'static str) -> Option<Section<'a, 'i>> {
        let value = self.take(key)?;
        match value.get_ref() {
            DeValue::Table(table) => Some(Section::new(
                self.ctx,
                self.key_path(key),
                table,
                value.span().start,
            )),
            _ => {
                self.wrong_type(key, "a table", value);
                None
            }
        }
    }

    /// An array of tables (`[[key]]`), each with the path `key[i]`.
    pub fn tables(&mut self, key: &'static str) -> Vec<Section<'a, 'i>> {
        let Some(value) = self.take(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, &format!("an array of tables ([[{key}]])"), value);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.key_path(key));
            match item.get_ref() {
                DeValue::Table(table) => {
                    out.push(Section::new(self.ctx, path, table, item.span().start));
                }
                other => {
                    let msg = format!("expected a table, found {}", type_name(other));
                    self.ctx.error(item.span().start, path, msg);
                }
            }
        }
        out
    }

    /// Every key of a table whose keys are names chosen by the operator (a field mapping),
    /// with its value. All keys count as read.
    pub fn entries(self) -> Vec<(String, Entry<'a, 'i>)> {
        let mut out = Vec::new();
        for (key, value) in self.table.iter() {
            let key = key.get_ref().to_string();
            let path = self.key_path(&key);
            let entry = match value.get_ref() {
                DeValue::String(s) => Entry::Str(s.to_string()),
                DeValue::Table(table) => {
                    Entry::Table(Section::new(self.ctx, path, table, value.span().start))
                }
                other => Entry::Other {
                    path,
                    pos: value.span().start,
                    found: type_name(other),
                },
            };
            out.push((key, entry));
        }
        out
    }

    /// Every key of a table whose keys are chosen by the operator and whose values are
    /// strings (e.g. locale → store view code), with each value's path and position for
    /// later errors. Other values are reported and left out.
    pub fn string_entries(self) -> Vec<(String, Item<String>)> {
        let mut out = Vec::new();
        for (key, value) in self.table.iter() {
            let key = key.get_ref().to_string();
            let path = self.key_path(&key);
            let pos = value.span().start;
            match value.get_ref() {
                DeValue::String(s) => out.push((
                    key,
                    Item {
                        path,
                        pos,
                        value: s.to_string(),
                    },
                )),
                other => {
                    let msg = format!("expected a string, found {}", type_name(other));
                    self.ctx.error(pos, path, msg);
                }
            }
        }
        out
    }

    /// Every key of a table whose keys are chosen by the operator and whose values are
    /// secrets (a string or a secret reference), resolved; `None` where resolving failed
    /// (already reported, naming the variable or file but never a value).
    pub fn secret_entries(self) -> Vec<(String, Item<Option<Secret>>)> {
        let mut out = Vec::new();
        for (key, value) in self.table.iter() {
            let key = key.get_ref().to_string();
            let path = self.key_path(&key);
            let secret = self.ctx.secret(&path, value);
            let pos = value.span().start;
            out.push((
                key,
                Item {
                    path,
                    pos,
                    value: secret,
                },
            ));
        }
        out
    }

    /// Every key of a table whose keys are chosen by the operator and whose values are
    /// non-negative integers (e.g. category code → id). Bad values are reported and left out.
    pub fn integer_entries(self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (key, value) in self.table.iter() {
            let key = key.get_ref().to_string();
            if let Some(n) = self.ctx.non_negative(&self.key_path(&key), value) {
                out.push((key, n));
            }
        }
        out
    }

    /// Reports every key that was not read, with the keys this table accepts.
    pub fn finish(self) {
        let expected = self.expected.join(", ");
        for (key, _) in self.table.iter() {
            if self.consumed.contains(&key.get_ref().as_ref()) {
                continue;
            }
            let msg = if expected.is_empty() {
                "unknown key".to_string()
            } else {
                format!("unknown key (expected one of: {expected})")
            };
            self.ctx
                .error(key.span().start, self.key_path(key.get_ref()), msg);
        }
    }
}

/// A value in a table with operator-chosen keys.
pub(super) enum Entry<'a, 'i> {
    Str(String),
    Table(Section<'a, 'i>),
    Other {
        path: String,
        pos: usize,
        found: &'static str,
    },
}

/// `parent.key`, quoting keys that are not bare TOML keys so the path can be pasted back.
fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// "1MiB", "512 KiB", "10MB", "4096B", "4096". Binary and decimal units, case-insensitive.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.replace('_', "").parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}
