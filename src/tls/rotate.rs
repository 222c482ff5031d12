//! Replacing the interception CA without a day when agents trust neither: `prepare` creates the
//! next CA in `certs/next/` (agents are given both certificates meanwhile: [`trust_bundle`]),
//! and `finish` puts it in place, the old key going with it. `finish` is written so that a
//! crash at any step leaves a state it completes when run again, and a start that finds a
//! rotation half done refuses rather than minting a third CA.

use std::fs;
use std::path::{Path, PathBuf};

use super::ca::{file_err as err, CertificateAuthority, CA_CERT_FILE, CA_KEY_FILE};
use super::TlsError;

/// The directory of the CA prepared to replace the one in `ca_dir`.
pub const NEXT_DIR: &str = "next";
/// Where `finish` moves the old CA while it swaps (the key is removed once the new CA loads).
pub const RETIRED_DIR: &str = "retired";

/// `ca_dir/next`, where a prepared CA lives.
pub fn next_dir(ca_dir: &Path) -> PathBuf {
    ca_dir.join(NEXT_DIR)
}

/// Whether a next CA has been prepared (both of its files present).
pub fn prepared(ca_dir: &Path) -> bool {
    let next = next_dir(ca_dir);
    next.join(CA_CERT_FILE).exists() && next.join(CA_KEY_FILE).exists()
}

/// An error when a rotation was left half done (its CA files moved but not all in place), so
/// that a start does not create a new CA over it.
pub fn check_not_interrupted(ca_dir: &Path) -> Result<(), TlsError> {
    let retired_key = ca_dir.join(RETIRED_DIR).join(CA_KEY_FILE);
    let next = next_dir(ca_dir);
    let current_whole = ca_dir.join(CA_CERT_FILE).exists() && ca_dir.join(CA_KEY_FILE).exists();
    // A half-made `next` beside a whole current CA is a `prepare` cut short: the CA in use
    // serves on (`prepare` and `finish` say what to do with it).
    if retired_key.exists() || (!current_whole && next.exists()) {
        return Err(err(
            ca_dir,
            "a CA rotation was left half done (certs/next, certs/retired): run `airlock ca \
             rotate --finish`, which completes it or says what to do",
        ));
    }
    Ok(())
}

/// Creates the next CA in `ca_dir/next`; refuses if one is prepared already or none is in use.
pub fn prepare(ca_dir: &Path) -> Result<CertificateAuthority, TlsError> {
    check_not_interrupted(ca_dir)?;
    CertificateAuthority::load(ca_dir)?;
    let next = next_dir(ca_dir);
    if prepared(ca_dir) {
        return Err(err(
            &next,
            "a next CA is already prepared: give agents `airlock ca export` (both certificates), \
             then `airlock ca rotate --finish`",
        ));
    }
    if next.exists() {
        return Err(err(
            &next,
            "a next CA was not fully created (a crash during `airlock ca rotate`?): remove this \
             directory and run `airlock ca rotate` again",
        ));
    }
    CertificateAuthority::create(&next)
}

/// The certificates agents should trust now: the CA in use, and the next one if prepared.
pub fn trust_bundle(ca_dir: &Path, current: &CertificateAuthority) -> Result<String, TlsError> {
    let mut pem = current.cert_pem().to_string();
    if prepared(ca_dir) {
        let next = CertificateAuthority::load(&next_dir(ca_dir))?;
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(next.cert_pem());
    }
    Ok(pem)
}

/// Puts the prepared CA in place of the current one; the old key is removed, the old
/// certificate kept as `retired/ca.pem`. Completes a rotation a crash interrupted.
pub fn finish(ca_dir: &Path) -> Result<CertificateAuthority, TlsError> {
    let next = next_dir(ca_dir);
    let retired = ca_dir.join(RETIRED_DIR);
    let here = |name: &str| ca_dir.join(name);
    // The next CA must be whole and loadable before anything moves; a rerun after the move
    // finds it in place instead.
    if prepared(ca_dir) {
        CertificateAuthority::load(&next)?;
        crate::secret_file::create_private_dir(&retired).map_err(|e| err(&retired, e))?;
        for name in [CA_CERT_FILE, CA_KEY_FILE] {
            if here(name).exists() {
                fs::rename(here(name), retired.join(name)).map_err(|e| err(&here(name), e))?;
            }
        }
    } else if !retired.join(CA_KEY_FILE).exists() {
        // The swap never started: at most an empty or half-made `next` to clear up.
        let empty = fs::read_dir(&next).is_ok_and(|mut d| d.next().is_none());
        if empty {
            fs::remove_dir(&next).map_err(|e| err(&next, e))?;
            return CertificateAuthority::load(ca_dir);
        }
        return Err(err(
            &next,
            match next.exists() {
                true => "the next CA was not fully created (a crash during `airlock ca rotate`?): remove this directory and run `airlock ca rotate` again",
                false => "no next CA is prepared: run `airlock ca rotate` first",
            },
        ));
    }
    for name in [CA_CERT_FILE, CA_KEY_FILE] {
        if next.join(name).exists() {
            fs::rename(next.join(name), here(name)).map_err(|e| err(&next.join(name), e))?;
        }
    }
    let ca = CertificateAuthority::load(ca_dir)?;
    sync_dir(ca_dir)?;
    for leftover in [retired.join(CA_KEY_FILE)] {
        if leftover.exists() {
            fs::remove_file(&leftover).map_err(|e| err(&leftover, e))?;
        }
    }
    if next.exists() {
        fs::remove_dir(&next).map_err(|e| err(&next, e))?;
    }
    sync_dir(ca_dir)?;
    Ok(ca)
}

/// Makes the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), TlsError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err(dir, e))
}
