//! The cap on live keys per user (`MAX_KEYS_PER_USER`, docs/CONTRACT.md section 4): one more
//! key, a roll, and the roll of an imported key (section 15). The user's object enforces the
//! number these give it ([`crate::core::auditlog`]).

use crate::core::error::Error;

/// A roll replaces a key: it is refused only when the user would hold more than one key over
/// the cap (the old key may stay live during its grace), so rotation works at the cap while
/// repeated rolls with grace cannot mint keys without bound.
pub fn may_roll_key(live_keys: u64, max: u64) -> Result<(), Error> {
    may_add_key(live_keys.saturating_sub(1), max)
}

/// The cap a roll's new key is admitted under (the user's object enforces it), or the refusal.
/// Rolling an imported key moves its user to a native key (section 15) and is never refused
/// by the cap, which imported keys may exceed; any other roll may go one over it for a moment
/// (both keys live during the grace).
pub fn roll_cap(imported: bool, live_keys: u64, max: u64) -> Result<u64, Error> {
    if imported {
        return Ok(u64::MAX);
    }
    may_roll_key(live_keys, max)?;
    Ok(max + 1)
}

/// The cap on live keys per user (`MAX_KEYS_PER_USER`): one more is refused, nothing stored.
pub fn may_add_key(live_keys: u64, max: u64) -> Result<(), Error> {
    if live_keys >= max {
        Err(Error::KeyLimitReached)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_keys_per_user_are_capped() {
        assert_eq!(may_add_key(99, 100), Ok(()));
        assert_eq!(may_add_key(100, 100), Err(Error::KeyLimitReached));
        // A roll at the cap is allowed (it replaces a key), one more is not: repeated rolls
        // with grace cannot mint without bound.
        assert_eq!(may_roll_key(100, 100), Ok(()));
        assert_eq!(may_roll_key(101, 100), Err(Error::KeyLimitReached));
    }

    #[test]
    fn rolling_an_imported_key_is_never_refused_by_the_cap() {
        assert_eq!(roll_cap(false, 5, 5), Ok(6));
        assert_eq!(roll_cap(false, 6, 5), Err(Error::KeyLimitReached));
        assert_eq!(roll_cap(true, 600, 5), Ok(u64::MAX));
    }
}
