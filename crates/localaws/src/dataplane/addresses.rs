//! The loopback addresses a data plane gives its container instances.
//!
//! Instances live at `127.B.x.y`, one block `B` (the second octet) per running data plane. Two
//! `localaws` on one machine (two rehearsals, or tests side by side) would otherwise hand the same
//! address to two instances, and a static host port or the ECS agent's port on it would already be
//! taken by the other's task. A plane claims its block by holding an exclusive lock on a file named
//! after it in the temporary directory; the operating system drops the lock with the process, also
//! after a crash or SIGKILL, so no block stays claimed by a process that is gone. Block 0
//! (`127.0.1.1`, `127.0.1.2`, ...) comes first: a plane alone gets the addresses it always had.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Instances per block: `127.B.1.1` to `127.B.255.250`.
const PER_BLOCK: u64 = 250 * 255;

/// A claimed block of instance addresses, held until dropped.
#[derive(Debug)]
pub struct AddressBlock {
    octet: u8,
    /// The locked file; `None` when no block could be claimed (block 0, unguarded).
    _lock: Option<File>,
}

impl AddressBlock {
    /// Claims the first free block, its lock file in the system's temporary directory.
    pub fn claim() -> AddressBlock {
        Self::claim_in(&std::env::temp_dir())
    }

    /// Claims the first free block, its lock file in `dir`. When none can be claimed (every
    /// block taken, or `dir` not writable) the plane uses block 0 as before, and says so.
    pub(crate) fn claim_in(dir: &Path) -> AddressBlock {
        let mut last_error = None;
        for octet in 0..=u8::MAX {
            let path = lock_path(dir, octet);
            let file = match OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) => {
                    last_error = Some(format!("{}: {e}", path.display()));
                    break;
                }
            };
            match file.try_lock() {
                Ok(()) => {
                    return AddressBlock {
                        octet,
                        _lock: Some(file),
                    };
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    last_error = Some(format!("{}: {e}", path.display()));
                    break;
                }
            }
        }
        tracing::warn!(
            reason = last_error
                .as_deref()
                .unwrap_or("every block is held by another process"),
            "no instance address block could be claimed; using 127.0.x.y, which another \
             localaws on this machine may use too"
        );
        AddressBlock {
            octet: 0,
            _lock: None,
        }
    }

    /// The second octet of every address in the block.
    pub fn octet(&self) -> u8 {
        self.octet
    }

    /// An address of the block that no instance is given and nothing else binds, `127.B.0.254`:
    /// for a server beside a fleet whose address must stay free until a child process binds it
    /// (a test's validation hook). Outgoing loopback connections take 127.0.0.1 as their source
    /// address, so no ephemeral port is ever handed out on it.
    pub fn spare_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(127, self.octet, 0, 254)
    }

    /// The address of the `n`th instance (from 0): `127.B.1.1`, `127.B.1.2`, ...
    /// `127.B.1.250`, `127.B.2.1`, ... up to `127.B.255.250`, then round again.
    pub(crate) fn ip(&self, n: u64) -> Ipv4Addr {
        let n = n % PER_BLOCK;
        // Both below 256 by the modulus.
        let third = u8::try_from(1 + n / 250).unwrap_or(u8::MAX);
        let fourth = u8::try_from(1 + n % 250).unwrap_or(u8::MAX);
        Ipv4Addr::new(127, self.octet, third, fourth)
    }
}

fn lock_path(dir: &Path, octet: u8) -> PathBuf {
    dir.join(format!("localaws-instances-127.{octet}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_run_through_the_block_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let block = AddressBlock::claim_in(dir.path());
        assert_eq!(block.octet(), 0);
        assert_eq!(block.ip(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(block.ip(249), Ipv4Addr::new(127, 0, 1, 250));
        assert_eq!(block.ip(250), Ipv4Addr::new(127, 0, 2, 1));
        assert_eq!(block.ip(PER_BLOCK - 1), Ipv4Addr::new(127, 0, 255, 250));
        assert_eq!(block.ip(PER_BLOCK), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(block.spare_ip(), Ipv4Addr::new(127, 0, 0, 254));
    }

    #[test]
    fn a_claimed_block_is_not_given_twice_and_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = AddressBlock::claim_in(dir.path());
        let b = AddressBlock::claim_in(dir.path());
        let c = AddressBlock::claim_in(dir.path());
        assert_eq!((a.octet(), b.octet(), c.octet()), (0, 1, 2));
        drop(b);
        assert_eq!(AddressBlock::claim_in(dir.path()).octet(), 1);
    }

    #[test]
    fn an_unwritable_directory_falls_back_to_block_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no/such/dir");
        let block = AddressBlock::claim_in(&missing);
        assert_eq!(block.octet(), 0);
        assert_eq!(block.ip(0), Ipv4Addr::new(127, 0, 1, 1));
    }
}
