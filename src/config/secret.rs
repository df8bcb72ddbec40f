//! Secrets are resolved when the config is loaded and never printed.

use std::path::Path;

use toml::de::DeValue;

use super::reader::{Ctx, Section, Value, type_name};

/// A resolved secret. Its `Debug` never shows the value, so a config can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// Resolving `{ env = … }`, `{ file = … }` and `{ credential = … }` while the config is read.
impl Ctx<'_> {
    /// Resolves a secret written as an inline string, `{ env = "NAME" }`, `{ file = "PATH" }`
    /// or `{ credential = "NAME" }`. Messages name the variable, file or credential but
    /// never include a value.
    pub fn secret(&self, path: &str, value: &Value<'_>) -> Option<Secret> {
        let pos = value.span().start;
        let bytes = match value.get_ref() {
            DeValue::String(s) => s.as_bytes().to_vec(),
            DeValue::Table(table) => {
                let mut sec = Section::new(self, path.to_string(), table, pos);
                let env = sec.optional_str("env");
                let file = sec.optional_str("file");
                let credential = sec.optional_str("credential");
                sec.finish();
                match (env, file, credential) {
                    (Some(name), None, None) => self.secret_from_env(path, pos, &name)?,
                    (None, Some(file), None) => self.secret_from_file(path, pos, &file)?,
                    (None, None, Some(name)) => self.secret_from_credential(path, pos, &name)?,
                    _ => {
                        let msg = "set exactly one of env, file or credential";
                        self.error(pos, path, msg);
                        return None;
                    }
                }
            }
            other => {
                let msg = format!(
                    "expected a string or a table like {{ env = \"NAME\" }}, found {}",
                    type_name(other)
                );
                self.error(pos, path, msg);
                return None;
            }
        };
        if bytes.is_empty() {
            self.error(pos, path, "secret must not be empty");
            return None;
        }
        Some(Secret::new(bytes))
    }

    fn secret_from_env(&self, path: &str, pos: usize, name: &str) -> Option<Vec<u8>> {
        match self.env.var(name) {
            Some(value) if value.is_empty() => {
                self.error(pos, path, format!("environment variable {name} is empty"));
                None
            }
            Some(value) => Some(value.into_bytes()),
            None => {
                self.error(pos, path, format!("environment variable {name} is not set"));
                None
            }
        }
    }

    fn secret_from_file(&self, path: &str, pos: usize, file: &str) -> Option<Vec<u8>> {
        let file = self.resolve_path(file);
        let shown = file.display();
        match self.env.read_file(&file) {
            Ok(bytes) => non_empty(trim_newline(bytes)).or_else(|| {
                self.error(pos, path, format!("secret file {shown} is empty"));
                None
            }),
            Err(e) => {
                self.error(pos, path, format!("cannot read secret file {shown}: {e}"));
                None
            }
        }
    }

    /// systemd passes credentials (`LoadCredential=`, `SetCredential=`) as files in
    /// `$CREDENTIALS_DIRECTORY`, which is only set for a service started with them.
    fn secret_from_credential(&self, path: &str, pos: usize, name: &str) -> Option<Vec<u8>> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            let msg = "invalid credential name (a file name in $CREDENTIALS_DIRECTORY)";
            self.error(pos, path, msg);
            return None;
        }
        let Some(dir) = self.env.var("CREDENTIALS_DIRECTORY") else {
            let msg = format!(
                "credential {name} requested but $CREDENTIALS_DIRECTORY is not set \
                 (run under systemd with LoadCredential={name}:… or use env/file)"
            );
            self.error(pos, path, msg);
            return None;
        };
        let file = Path::new(&dir).join(name);
        match self.env.read_file(&file) {
            Ok(bytes) => non_empty(trim_newline(bytes)).or_else(|| {
                self.error(pos, path, format!("credential {name} is empty"));
                None
            }),
            Err(e) => {
                let msg = format!("cannot read credential {name} ({}): {e}", file.display());
                self.error(pos, path, msg);
                None
            }
        }
    }
}

/// Files written by editors and `echo` end in a newline that is not part of the secret.
fn trim_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

fn non_empty(bytes: Vec<u8>) -> Option<Vec<u8>> {
    (!bytes.is_empty()).then_some(bytes)
}
