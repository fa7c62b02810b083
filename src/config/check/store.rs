//! `[store]`: which database holds the state (DESIGN §12).

use super::Checker;
use crate::config::shape::KeyPath;
use crate::config::{DEFAULT_DATABASE_URL_ENV, StoreConfig, StoreKind};

impl Checker<'_> {
    pub(super) fn store(&mut self, st: &StoreConfig) {
        let Some(var) = &st.url_env else { return };
        let at = KeyPath::root().key("store").key("url_env");
        if st.kind == StoreKind::Sled {
            self.report(
                &at,
                "url_env is only read with kind = \"postgres\" (sled keeps its data in --data DIR)"
                    .to_string(),
            );
        } else if var.contains("://") {
            self.report(
                &at,
                format!(
                    "url_env names an environment variable, not the URL itself (put the URL in \
                     a variable such as {DEFAULT_DATABASE_URL_ENV} and name it here)"
                ),
            );
        } else if var.is_empty()
            || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || var.starts_with(|c: char| c.is_ascii_digit())
        {
            self.report(
                &at,
                format!(
                    "invalid environment variable name {var:?} (letters, digits and _, not \
                     starting with a digit)"
                ),
            );
        }
    }
}
