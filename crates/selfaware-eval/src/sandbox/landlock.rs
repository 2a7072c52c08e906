//! The Landlock layer: a kernel rule set, applied to the child before the interpreter is
//! executed, under which nothing outside the run's private directory can be written,
//! created, removed, renamed into or truncated (reading is left alone). From ABI 4 on, TCP
//! `bind`/`connect` are refused too; from ABI 6 on, the child cannot signal processes outside
//! its own Landlock domain nor reach abstract Unix sockets outside it.
//!
//! The rule set is built in the parent (it names the directory by an open file descriptor)
//! and only applied in the forked child, with one system call.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

// System-call numbers: the same on every architecture since Linux 5.13.
const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_ADD_RULE: libc::c_long = 445;
const SYS_RESTRICT_SELF: libc::c_long = 446;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

// Filesystem rights (linux/landlock.h); EXECUTE (1), READ_FILE (1 << 2), READ_DIR (1 << 3)
// and IOCTL_DEV (1 << 15) are not handled, so they stay allowed everywhere.
const WRITE_FILE: u64 = 1 << 1;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13; // ABI 2
const TRUNCATE: u64 = 1 << 14; // ABI 3

const NET_BIND_TCP: u64 = 1; // ABI 4
const NET_CONNECT_TCP: u64 = 1 << 1;

const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1; // ABI 6
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version this kernel offers, or why there is none.
pub(crate) fn abi() -> Result<u32, std::io::Error> {
    // SAFETY: with a null attribute and size 0 this call only reports the version.
    let v = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(v as u32)
    }
}

/// The filesystem rights that only the private directory grants, at ABI `abi`.
pub(crate) fn write_rights(abi: u32) -> u64 {
    let mut r = WRITE_FILE
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        r |= REFER;
    }
    if abi >= 3 {
        r |= TRUNCATE;
    }
    r
}

fn attr(abi: u32) -> (RulesetAttr, usize) {
    let a = RulesetAttr {
        handled_access_fs: write_rights(abi),
        handled_access_net: if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // Older kernels reject a structure longer than the one they know.
    let size = match abi {
        0..=3 => 8,
        4 | 5 => 16,
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    (a, size)
}

/// A rule set that grants the write rights only beneath `dir`.
pub(crate) fn ruleset(dir: &Path, abi: u32) -> Result<OwnedFd, std::io::Error> {
    let (attr, size) = attr(abi);
    // SAFETY: attr outlives the call and is at least `size` bytes long.
    let fd = unsafe { libc::syscall(SYS_CREATE_RULESET, &attr as *const RulesetAttr, size, 0u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor (close-on-exec) and nothing else owns it.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let dir = fs_err::File::open(dir)?;
    let rule = PathBeneathAttr {
        allowed_access: write_rights(abi),
        parent_fd: dir.as_raw_fd(),
    };
    // SAFETY: both descriptors are open for the call and `rule` outlives it.
    let r = unsafe {
        libc::syscall(
            SYS_ADD_RULE,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &rule as *const PathBeneathAttr,
            0u32,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ruleset)
}

/// Applies `ruleset` to the calling thread and what it executes. No-new-privileges must
/// already be set (or the caller be privileged).
///
/// # Safety
/// One system call; async-signal-safe, so it may run in a forked child before `exec`.
pub(crate) unsafe fn restrict_self(ruleset: RawFd) -> std::io::Result<()> {
    if libc::syscall(SYS_RESTRICT_SELF, ruleset, 0u32) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        // linux/landlock.h: WRITE_FILE 2, REMOVE_DIR..MAKE_SYM 0x10..0x1000, REFER 0x2000,
        // TRUNCATE 0x4000.
        assert_eq!(write_rights(1), 0x1ff2);
        assert_eq!(write_rights(2), 0x3ff2);
        assert_eq!(write_rights(3), 0x7ff2);
        assert_eq!(write_rights(7), 0x7ff2);
        assert_eq!(attr(1).1, 8);
        assert_eq!((attr(3).0.handled_access_net, attr(3).1), (0, 8));
        assert_eq!((attr(4).0.handled_access_net, attr(4).1), (3, 16));
        assert_eq!((attr(5).0.scoped, attr(5).1), (0, 16));
        assert_eq!((attr(6).0.scoped, attr(6).1), (3, 24));
    }
}
