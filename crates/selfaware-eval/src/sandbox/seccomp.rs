//! The seccomp layer: a classic BPF program, checked by the kernel on every system call, that
//! makes process creation impossible and, once the interpreter is running, `execve` too.
//!
//! Two programs are installed, and seccomp filters stack (every one must allow a call):
//! [`Rules::NoNewProcesses`] in the forked child just before the interpreter is executed, and
//! [`Rules::NoNewProcessesNoExec`] by the harness itself, before any model code is loaded (it
//! cannot be installed earlier: the `execve` of the interpreter still has to happen).
//!
//! What a program returns for a system call:
//! - another architecture or ABI than the native one (32-bit `int 0x80` on x86_64, x32):
//!   the process is killed, so the table below cannot be sidestepped;
//! - `fork`, `vfork`, and `clone` without `CLONE_THREAD`: `EPERM` (threads stay possible:
//!   the harness's timers and the interpreter may use them);
//! - `clone3`: `ENOSYS`, so that libc falls back to `clone`, whose flags a filter can read
//!   (those of `clone3` sit behind a pointer);
//! - `execve` and `execveat` (second program only): `EPERM`;
//! - anything else: allowed.

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

// Opcodes (linux/bpf_common.h), written out: class | size/op | mode/source.
const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE (0x30) | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET (0x40) | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

// Return values (linux/seccomp.h).
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;

// Offsets in `struct seccomp_data` { int nr; __u32 arch; __u64 ip; __u64 args[6]; }; the low
// half of args[0] is at 16 on little-endian machines (the only ones [`native`] accepts).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LOW: u32 = 16;

const CLONE_THREAD: u32 = 0x0001_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The system-call numbers a program needs, for one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arch {
    /// `AUDIT_ARCH_*`, as the kernel reports it in `seccomp_data.arch`.
    pub audit: u32,
    /// Whether numbers with the x32 bit set reach the same table (x86_64 only).
    pub x32_bit: bool,
    pub fork: Option<u32>,
    pub vfork: Option<u32>,
    pub clone: u32,
    pub clone3: u32,
    pub execve: u32,
    pub execveat: u32,
}

/// x86_64 (arch/x86/entry/syscalls/syscall_64.tbl).
pub(crate) const X86_64: Arch = Arch {
    audit: 0xc000_003e,
    x32_bit: true,
    fork: Some(57),
    vfork: Some(58),
    clone: 56,
    clone3: 435,
    execve: 59,
    execveat: 322,
};

/// aarch64 (the generic table, include/uapi/asm-generic/unistd.h: no fork or vfork).
pub(crate) const AARCH64: Arch = Arch {
    audit: 0xc000_00b7,
    x32_bit: false,
    fork: None,
    vfork: None,
    clone: 220,
    clone3: 435,
    execve: 221,
    execveat: 281,
};

/// The architecture this crate was built for, if a program can be written for it.
pub(crate) fn native() -> Option<&'static Arch> {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        Some(&X86_64)
    } else if cfg!(all(
        target_os = "linux",
        target_arch = "aarch64",
        target_endian = "little"
    )) {
        Some(&AARCH64)
    } else {
        None
    }
}

/// Which calls a program refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    /// No new processes (threads are fine).
    NoNewProcesses,
    /// No new processes, and no `execve`/`execveat`.
    NoNewProcessesNoExec,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The program for `arch`.
pub(crate) fn program(arch: &Arch, rules: Rules) -> Vec<Insn> {
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, arch.audit, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    if arch.x32_bit {
        p.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(RET_K, RET_KILL_PROCESS));
    }
    let mut refused: Vec<(u32, u32)> = [arch.fork, arch.vfork]
        .into_iter()
        .flatten()
        .map(|nr| (nr, EPERM))
        .collect();
    refused.push((arch.clone3, ENOSYS));
    if rules == Rules::NoNewProcessesNoExec {
        refused.push((arch.execve, EPERM));
        refused.push((arch.execveat, EPERM));
    }
    for (nr, errno) in refused {
        p.push(jump(JEQ_K, nr, 0, 1));
        p.push(stmt(RET_K, RET_ERRNO | errno));
    }
    // clone: allowed only for a thread of this process.
    p.push(jump(JEQ_K, arch.clone, 0, 4));
    p.push(stmt(LD_W_ABS, OFF_ARG0_LOW));
    p.push(jump(JSET_K, CLONE_THREAD, 0, 1));
    p.push(stmt(RET_K, RET_ALLOW));
    p.push(stmt(RET_K, RET_ERRNO | EPERM));
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

/// Installs `program` for the calling thread (and what it executes), with no-new-privileges
/// set first (which seccomp requires of an unprivileged process).
///
/// # Safety
/// Makes only async-signal-safe system calls on memory the caller owns, so it may run in a
/// forked child before `exec`; the restriction it installs cannot be lifted.
pub(crate) unsafe fn install(program: &[Insn]) -> std::io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    let zero: libc::c_ulong = 0;
    if libc::prctl(
        libc::PR_SET_NO_NEW_PRIVS,
        1 as libc::c_ulong,
        zero,
        zero,
        zero,
    ) != 0
        || libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        ) != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference interpreter for the instructions [`program`] uses, run on the fields of
    /// `seccomp_data` a program reads. Any other opcode fails the test.
    fn run(p: &[Insn], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            let skip = |taken: bool| if taken { i.jt as usize } else { i.jf as usize };
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        OFF_ARG0_LOW => arg0 as u32,
                        k => panic!("load from offset {k}"),
                    }
                }
                JEQ_K => pc += skip(acc == i.k),
                JGE_K => pc += skip(acc >= i.k),
                JSET_K => pc += skip(acc & i.k != 0),
                RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    const CLONE_VM: u64 = 0x100;
    const CLONE_VFORK: u64 = 0x4000;
    const SIGCHLD: u64 = 17;
    // What glibc's pthread_create passes (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND
    // | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID
    // | CLONE_CHILD_CLEARTID).
    const THREAD_FLAGS: u64 = 0x003d_0f00;
    const EPERM_RET: u32 = RET_ERRNO | 1;

    fn check(arch: &Arch, rules: Rules, cases: &[(u32, u64, u32)]) {
        let p = program(arch, rules);
        for &(nr, arg0, want) in cases {
            assert_eq!(
                run(&p, nr, arch.audit, arg0),
                want,
                "{rules:?}, syscall {nr}, arg0 {arg0:#x}"
            );
        }
    }

    #[test]
    fn x86_64_programs_refuse_processes_and_exec() {
        let common = [
            (0, 0, RET_ALLOW),                                 // read
            (1, 0, RET_ALLOW),                                 // write
            (38, 0, RET_ALLOW),                                // setitimer
            (62, 0, RET_ALLOW),                                // kill
            (57, 0, EPERM_RET),                                // fork
            (58, 0, EPERM_RET),                                // vfork
            (56, SIGCHLD, EPERM_RET),                          // clone as fork
            (56, CLONE_VM | CLONE_VFORK | SIGCHLD, EPERM_RET), // clone as posix_spawn
            (56, THREAD_FLAGS, RET_ALLOW),                     // clone as pthread_create
            (56, (1 << 32) | SIGCHLD, EPERM_RET),              // high bits do not matter
            (435, THREAD_FLAGS, RET_ERRNO | 38),               // clone3
            (X32_SYSCALL_BIT | 520, 0, RET_KILL_PROCESS),      // x32 execve
            (X32_SYSCALL_BIT, 0, RET_KILL_PROCESS),
        ];
        check(&X86_64, Rules::NoNewProcesses, &common);
        check(&X86_64, Rules::NoNewProcessesNoExec, &common);
        check(
            &X86_64,
            Rules::NoNewProcesses,
            &[(59, 0, RET_ALLOW), (322, 0, RET_ALLOW)],
        );
        check(
            &X86_64,
            Rules::NoNewProcessesNoExec,
            &[(59, 0, EPERM_RET), (322, 0, EPERM_RET)],
        );
    }

    #[test]
    fn aarch64_programs_refuse_processes_and_exec() {
        let common = [
            (63, 0, RET_ALLOW),                  // read
            (64, 0, RET_ALLOW),                  // write
            (57, 0, RET_ALLOW),                  // close (fork's number on x86_64)
            (220, SIGCHLD, EPERM_RET),           // clone as fork
            (220, THREAD_FLAGS, RET_ALLOW),      // clone as pthread_create
            (435, 0, RET_ERRNO | 38),            // clone3
            (X32_SYSCALL_BIT | 1, 0, RET_ALLOW), // no x32 on aarch64
        ];
        check(&AARCH64, Rules::NoNewProcesses, &common);
        check(&AARCH64, Rules::NoNewProcessesNoExec, &common);
        check(&AARCH64, Rules::NoNewProcesses, &[(221, 0, RET_ALLOW)]);
        check(
            &AARCH64,
            Rules::NoNewProcessesNoExec,
            &[(221, 0, EPERM_RET), (281, 0, EPERM_RET)],
        );
    }

    #[test]
    fn a_foreign_architecture_is_killed() {
        const AUDIT_ARCH_I386: u32 = 0x4000_0003;
        for rules in [Rules::NoNewProcesses, Rules::NoNewProcessesNoExec] {
            let p = program(&X86_64, rules);
            // read on x86_64 is 0; on i386, 3; either way the architecture decides.
            assert_eq!(run(&p, 3, AUDIT_ARCH_I386, 0), RET_KILL_PROCESS);
            assert_eq!(run(&p, 0, AARCH64.audit, 0), RET_KILL_PROCESS);
            let p = program(&AARCH64, rules);
            assert_eq!(run(&p, 63, X86_64.audit, 0), RET_KILL_PROCESS);
        }
    }
}
