//! People's names (reviewers, agent owners, approver lists) compared in one normalized form:
//! Unicode NFKC, lower-cased, surrounding blanks trimmed. "Alice", "alice " and the full-width
//! "ａｌｉｃｅ" are the same person.

use unicode_normalization::UnicodeNormalization;

/// The normalized form of a person's (or group's) name.
pub fn key(name: &str) -> String {
    let folded = name.trim().nfkc().collect::<String>().to_lowercase();
    // Lower-casing can leave a string that is no longer in NFKC (and blanks NFKC made); redo both.
    folded.trim().nfkc().collect()
}

/// Do `a` and `b` name the same person?
pub fn same(a: &str, b: &str) -> bool {
    a == b || key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_normalized() {
        assert!(same("Alice", "alice "));
        assert!(same(" ALICE\t", "alice"));
        assert!(same("ａｌｉｃｅ", "alice"), "full-width letters (NFKC)");
        assert!(same("Ⅻ", "xii"), "compatibility forms");
        assert!(!same("alice", "alicia"));
        assert_eq!(key("  Bob "), "bob");
    }
}
