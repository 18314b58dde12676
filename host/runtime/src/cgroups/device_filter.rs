//! cgroup v2 device rules: the OCI `linux.resources.devices` list compiled
//! into a `BPF_PROG_TYPE_CGROUP_DEVICE` program, loaded with bpf(2) and
//! attached to the container's cgroup directory.
//!
//! Semantics (those of the v1 devices controller, which runc and crun
//! emulate on v2):
//! - a rule of type `a` resets everything before it: `allow a` makes the
//!   default "allow", `deny a` the default "deny";
//! - later rules win: the program tests the rules last to first and the
//!   first match decides;
//! - an allow rule matches when every requested access bit is in its
//!   `access`, a deny rule when any of them is (v1's partial match), so
//!   `deny c 1:3 w` still refuses an `O_RDWR` open;
//! - a major or minor that is absent or negative matches any number.
//!
//! The encoder is a few dozen lines for the handful of instructions the
//! program needs (loads, ALU, conditional jumps, exit): smaller and easier
//! to check than an eBPF assembler dependency, and the unit tests below
//! check the emitted program instruction by instruction.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::LinuxDeviceCgroup;

/// `bpf_cgroup_dev_ctx.access_type`'s high half.
pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;
/// `bpf_cgroup_dev_ctx.access_type`'s low half.
pub const DEV_BLOCK: u32 = 1;
pub const DEV_CHAR: u32 = 2;

/// One device rule, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// None: any type (`a`).
    pub typ: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

impl Rule {
    /// From the `"c 1:3 rwm"` form the v1 files use (`*` for any number).
    pub fn parse(allow: bool, text: &str) -> Result<Rule> {
        let mut it = text.split_whitespace();
        let (Some(typ), Some(nums), access, None) = (it.next(), it.next(), it.next(), it.next()) else {
            bail!("device rule {text:?}: want \"TYPE MAJOR:MINOR ACCESS\"");
        };
        let (major, minor) = nums.split_once(':').with_context(|| format!("device rule {text:?}: no MAJOR:MINOR"))?;
        let num = |s: &str| -> Result<Option<i64>> {
            if s == "*" { Ok(None) } else { Ok(Some(s.parse().with_context(|| format!("device rule {text:?}: number {s:?}"))?)) }
        };
        Rule::new(allow, typ, num(major)?, num(minor)?, access)
    }

    /// From the OCI fields; absent or negative numbers are wildcards.
    pub fn new(allow: bool, typ: &str, major: Option<i64>, minor: Option<i64>, access: Option<&str>) -> Result<Rule> {
        let typ = match typ {
            "a" => None,
            "c" | "u" => Some(DEV_CHAR),
            "b" => Some(DEV_BLOCK),
            other => bail!("device rule type {other:?}: the devices cgroup knows a, b and c"),
        };
        let num = |n: Option<i64>, what: &str| -> Result<Option<u32>> {
            match n.filter(|n| *n >= 0) {
                None => Ok(None),
                Some(n) => Ok(Some(u32::try_from(n).ok().filter(|n| *n <= i32::MAX as u32).with_context(|| format!("device {what} {n} is out of range"))?)),
            }
        };
        let mut bits = 0;
        for c in access.unwrap_or("rwm").chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                other => bail!("device access {other:?}: want r, w or m"),
            };
        }
        Ok(Rule { allow, typ, major: num(major, "major")?, minor: num(minor, "minor")?, access: if bits == 0 { ACC_ALL } else { bits } })
    }

    /// From an OCI rule (type `p`, a fifo, is never checked by the devices
    /// cgroup: None).
    pub fn from_oci(d: &LinuxDeviceCgroup) -> Result<Option<Rule>> {
        let typ = d.typ().map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default());
        let typ = typ.as_deref().unwrap_or("a");
        if typ == "p" {
            return Ok(None);
        }
        Rule::new(d.allow(), typ, d.major(), d.minor(), d.access().as_deref()).map(Some)
    }
}

/// The rules that still count after the last `a` rule, and the default.
pub fn effective(rules: &[Rule]) -> (bool, Vec<Rule>) {
    let mut default_allow = true;
    let mut out = Vec::new();
    for r in rules {
        if r.typ.is_none() {
            default_allow = r.allow;
            out.clear();
        } else {
            out.push(r.clone());
        }
    }
    (default_allow, out)
}

/// An eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode parts (linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU64: u8 = 0x07;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0xf), off, imm }
}
/// dst = *(u32 *)(src + off)
fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}
fn alu_imm(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
}
fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
}
fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    insn(BPF_JMP | op | BPF_K, dst, 0, off, imm)
}
fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_JMP | op | BPF_X, dst, src, off, 0)
}
fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

// Registers after the prologue.
const R_TYPE: u8 = 2;
const R_ACCESS: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;
/// Marks a jump whose offset is "past the end of this rule's block".
const SKIP: i16 = i16::MIN;

/// The program for `rules` (in spec order). r1 is the
/// `struct bpf_cgroup_dev_ctx *` {access_type, major, minor}; r0 = 1 allows.
pub fn compile(rules: &[Rule]) -> Vec<Insn> {
    let (default_allow, rules) = effective(rules);
    let mut prog = vec![
        ldx_w(R_TYPE, 1, 0),
        alu_imm(BPF_AND, R_TYPE, 0xffff),
        ldx_w(R_ACCESS, 1, 0),
        alu_imm(BPF_RSH, R_ACCESS, 16),
        ldx_w(R_MAJOR, 1, 4),
        ldx_w(R_MINOR, 1, 8),
    ];
    for r in rules.iter().rev() {
        let mut block = Vec::new();
        if let Some(t) = r.typ {
            block.push(jmp_imm(BPF_JNE, R_TYPE, t as i32, SKIP));
        }
        if r.access != ACC_ALL {
            block.push(mov_reg(1, R_ACCESS));
            block.push(alu_imm(BPF_AND, 1, r.access as i32));
            block.push(if r.allow {
                // every requested bit must be granted
                jmp_reg(BPF_JNE, 1, R_ACCESS, SKIP)
            } else {
                // any requested bit denies
                jmp_imm(BPF_JEQ, 1, 0, SKIP)
            });
        }
        if let Some(m) = r.major {
            block.push(jmp_imm(BPF_JNE, R_MAJOR, m as i32, SKIP));
        }
        if let Some(m) = r.minor {
            block.push(jmp_imm(BPF_JNE, R_MINOR, m as i32, SKIP));
        }
        block.push(alu_imm(BPF_MOV, 0, r.allow as i32));
        block.push(exit());
        let n = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.off == SKIP {
                ins.off = (n - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(alu_imm(BPF_MOV, 0, default_allow as i32));
    prog.push(exit());
    prog
}

/// What the program decides for one access (an interpreter for the subset
/// [`compile`] emits; the unit tests run rule sets through it).
pub fn evaluate(prog: &[Insn], typ: u32, major: u32, minor: u32, access: u32) -> bool {
    let ctx = [(access << 16) | typ, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        let k = i.imm as i64 as u64;
        pc += 1;
        match i.code {
            c if c == BPF_LDX | BPF_MEM | BPF_W => r[dst] = ctx[(i.off / 4) as usize] as u64,
            c if c == BPF_ALU64 | BPF_AND | BPF_K => r[dst] &= k,
            c if c == BPF_ALU64 | BPF_RSH | BPF_K => r[dst] >>= k,
            c if c == BPF_ALU64 | BPF_MOV | BPF_K => r[dst] = k,
            c if c == BPF_ALU64 | BPF_MOV | BPF_X => r[dst] = r[src],
            c if c & 0x07 == BPF_JMP && c & 0xf0 != BPF_EXIT => {
                let b = if c & BPF_X != 0 { r[src] } else { k };
                let taken = match c & 0xf0 {
                    BPF_JEQ => r[dst] == b,
                    BPF_JNE => r[dst] != b,
                    other => panic!("jump op {other:#x} not emitted"),
                };
                if taken {
                    pc += i.off as usize;
                }
            }
            c if c == BPF_JMP | BPF_EXIT => return r[0] == 1,
            other => panic!("opcode {other:#x} not emitted"),
        }
    }
}

// bpf(2) commands, program and attach types (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The name berth's programs carry (how an update finds the ones to replace).
pub const PROG_NAME: &str = "berth_devices";

/// `union bpf_attr` is a union of per-command structs; each command's
/// struct is laid out at its start and the rest must be zero.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(&mut self, off: usize, v: &[u8]) -> &mut Attr {
        self.0[off..off + v.len()].copy_from_slice(v);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<i32> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as i32) }
}

fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<OwnedFd> {
    // SAFETY: the commands used here return a new descriptor (O_CLOEXEC:
    // the kernel always sets it on bpf descriptors).
    bpf(cmd, attr).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads the program; on failure the error carries the verifier's log.
pub fn load(prog: &[Insn]) -> Result<OwnedFd> {
    const LICENSE: &[u8] = b"Apache-2.0\0";
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        // prog_type, insn_cnt, insns, license
        a.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE).u32(4, prog.len() as u32).u64(8, prog.as_ptr() as u64).u64(16, LICENSE.as_ptr() as u64);
        if let Some(buf) = log {
            // log_level, log_size, log_buf
            a.u32(24, 1).u32(28, buf.len() as u32).u64(32, buf.as_mut_ptr() as u64);
        }
        // prog_name (char[16], NUL-terminated)
        a.bytes(48, PROG_NAME.as_bytes());
        bpf_fd(BPF_PROG_LOAD, &mut a)
    };
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 64 * 1024];
            let again = attempt(Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let e = again.err().unwrap_or(first);
            Err(anyhow::Error::new(e)
                .context(format!("load the cgroup device program ({} instructions); verifier log: {}", prog.len(), text.trim())))
        }
    }
}

/// Ids of the device programs attached directly to `cgroup`.
fn attached(cgroup: BorrowedFd) -> std::io::Result<Vec<u32>> {
    let mut cap = 64;
    loop {
        let mut ids = vec![0u32; cap];
        let mut a = Attr::new();
        // target_fd, attach_type, query_flags, attach_flags (out), prog_ids, prog_cnt (in: room, out: count)
        a.u32(0, cgroup.as_raw_fd() as u32).u32(4, BPF_CGROUP_DEVICE).u64(16, ids.as_mut_ptr() as u64).u32(24, cap as u32);
        let r = bpf(BPF_PROG_QUERY, &mut a);
        let n = u32::from_ne_bytes(a.0[24..28].try_into().unwrap()) as usize;
        match r {
            Ok(_) => {
                ids.truncate(n.min(cap));
                return Ok(ids);
            }
            // More programs than room: the kernel says how many.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && n > cap => cap = n,
            Err(e) => return Err(e),
        }
    }
}

/// The name a loaded program was given.
fn prog_name(fd: BorrowedFd) -> std::io::Result<String> {
    // struct bpf_prog_info up to `name` (offset 64, 16 bytes).
    let mut info = [0u8; 80];
    let mut a = Attr::new();
    // bpf_fd, info_len, info
    a.u32(0, fd.as_raw_fd() as u32).u32(4, info.len() as u32).u64(8, info.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    let name = &info[64..80];
    let end = name.iter().position(|b| *b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// Compiles, loads and attaches `rules` to the cgroup directory `dir`
/// (BPF_F_ALLOW_MULTI), then detaches berth's programs attached before
/// (an update; for a moment both apply, which only ever denies more).
/// The attachment outlives every descriptor: the cgroup holds it.
pub fn apply(dir: &std::path::Path, rules: &[Rule]) -> Result<()> {
    let prog = load(&compile(rules))?;
    let cg = crate::sys::open(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
        .with_context(|| format!("open cgroup {}", dir.display()))?;
    let before = attached(cg.as_fd()).with_context(|| format!("query the device programs of {}", dir.display()))?;
    let mut a = Attr::new();
    // target_fd, attach_bpf_fd, attach_type, attach_flags
    a.u32(0, cg.as_raw_fd() as u32).u32(4, prog.as_raw_fd() as u32).u32(8, BPF_CGROUP_DEVICE).u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut a).with_context(|| format!("attach the device program to {}", dir.display()))?;
    for id in before {
        let mut a = Attr::new();
        a.u32(0, id);
        let old = match bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut a) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("open device program {id}")),
        };
        if prog_name(old.as_fd()).ok().as_deref() != Some(PROG_NAME) {
            continue;
        }
        let mut a = Attr::new();
        a.u32(0, cg.as_raw_fd() as u32).u32(4, old.as_raw_fd() as u32).u32(8, BPF_CGROUP_DEVICE);
        bpf(BPF_PROG_DETACH, &mut a).with_context(|| format!("detach the previous device program {id} from {}", dir.display()))?;
    }
    Ok(())
}

/// How many of berth's device programs are attached to `dir` (tests, diagnostics).
pub fn attached_count(dir: &std::path::Path) -> Result<usize> {
    let cg = crate::sys::open(dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)
        .with_context(|| format!("open cgroup {}", dir.display()))?;
    let mut n = 0;
    for id in attached(cg.as_fd()).with_context(|| format!("query {}", dir.display()))? {
        let mut a = Attr::new();
        a.u32(0, id);
        if let Ok(fd) = bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut a) {
            n += (prog_name(fd.as_fd()).ok().as_deref() == Some(PROG_NAME)) as usize;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(bool, &str)]) -> Vec<Rule> {
        list.iter().map(|(allow, t)| Rule::parse(*allow, t).unwrap()).collect()
    }

    const R: u32 = ACC_READ;
    const W: u32 = ACC_WRITE;
    const M: u32 = ACC_MKNOD;

    #[test]
    fn deny_all_then_null_emits_the_expected_program() {
        let p = compile(&rules(&[(false, "a *:* rwm"), (true, "c 1:3 rwm")]));
        let expect = vec![
            // prologue: type, access, major, minor into r2..r5
            Insn { code: 0x61, regs: 0x12, off: 0, imm: 0 },
            Insn { code: 0x57, regs: 0x02, off: 0, imm: 0xffff },
            Insn { code: 0x61, regs: 0x13, off: 0, imm: 0 },
            Insn { code: 0x77, regs: 0x03, off: 0, imm: 16 },
            Insn { code: 0x61, regs: 0x14, off: 4, imm: 0 },
            Insn { code: 0x61, regs: 0x15, off: 8, imm: 0 },
            // c 1:3 rwm
            Insn { code: 0x55, regs: 0x02, off: 4, imm: DEV_CHAR as i32 },
            Insn { code: 0x55, regs: 0x04, off: 3, imm: 1 },
            Insn { code: 0x55, regs: 0x05, off: 2, imm: 3 },
            Insn { code: 0xb7, regs: 0x00, off: 0, imm: 1 },
            Insn { code: 0x95, regs: 0x00, off: 0, imm: 0 },
            // default deny
            Insn { code: 0xb7, regs: 0x00, off: 0, imm: 0 },
            Insn { code: 0x95, regs: 0x00, off: 0, imm: 0 },
        ];
        assert_eq!(p, expect);
        assert!(evaluate(&p, DEV_CHAR, 1, 3, R | W));
        assert!(!evaluate(&p, DEV_CHAR, 1, 5, R));
        assert!(!evaluate(&p, DEV_BLOCK, 1, 3, R));
    }

    #[test]
    fn partial_access_emits_subset_and_overlap_tests() {
        let p = compile(&rules(&[(true, "c 1:3 r"), (false, "b *:* w")]));
        // last rule first: deny b *:* w -> type check, r1 = access & w, deny if nonzero
        assert_eq!(p[6], Insn { code: 0x55, regs: 0x02, off: 5, imm: DEV_BLOCK as i32 });
        assert_eq!(p[7], Insn { code: 0xbf, regs: 0x31, off: 0, imm: 0 });
        assert_eq!(p[8], Insn { code: 0x57, regs: 0x01, off: 0, imm: W as i32 });
        assert_eq!(p[9], Insn { code: 0x15, regs: 0x01, off: 2, imm: 0 });
        assert_eq!(p[10], Insn { code: 0xb7, regs: 0x00, off: 0, imm: 0 });
        // then allow c 1:3 r: every requested bit granted (jne r1, r3)
        assert_eq!(p[15], Insn { code: 0x5d, regs: 0x31, off: 4, imm: 0 });
        assert_eq!(p.len(), 6 + 6 + 8 + 2);
    }

    #[test]
    fn later_rules_win_and_a_resets() {
        let set = rules(&[
            (true, "c 1:5 rwm"), // dropped by the reset below
            (false, "a *:* rwm"),
            (true, "c 1:* rwm"),
            (false, "c 1:3 w"),
            (true, "b 8:0 r"),
        ]);
        let p = compile(&set);
        assert!(evaluate(&p, DEV_CHAR, 1, 5, R | W), "c 1:* allows 1:5");
        assert!(evaluate(&p, DEV_CHAR, 1, 3, R), "reading 1:3 is not denied");
        assert!(!evaluate(&p, DEV_CHAR, 1, 3, W), "writing 1:3 is denied");
        assert!(!evaluate(&p, DEV_CHAR, 1, 3, R | W), "a deny matches any requested bit");
        assert!(evaluate(&p, DEV_BLOCK, 8, 0, R));
        assert!(!evaluate(&p, DEV_BLOCK, 8, 0, R | W), "an allow needs every requested bit");
        assert!(!evaluate(&p, DEV_BLOCK, 8, 1, R));
        assert!(!evaluate(&p, DEV_CHAR, 4, 1, M), "default deny");

        let later_allow = compile(&rules(&[(false, "a *:* rwm"), (false, "c 1:3 rwm"), (true, "c 1:3 rwm")]));
        assert!(evaluate(&later_allow, DEV_CHAR, 1, 3, W));
        let later_deny = compile(&rules(&[(false, "a *:* rwm"), (true, "c 1:3 rwm"), (false, "c 1:3 rwm")]));
        assert!(!evaluate(&later_deny, DEV_CHAR, 1, 3, R));
    }

    #[test]
    fn default_allow_without_a_deny_all_and_after_allow_all() {
        let p = compile(&rules(&[(false, "c 10:200 rwm")]));
        assert!(evaluate(&p, DEV_CHAR, 1, 3, R));
        assert!(!evaluate(&p, DEV_CHAR, 10, 200, R));
        let p = compile(&rules(&[(false, "a *:* rwm"), (true, "a *:* rwm")]));
        assert_eq!(p.len(), 8, "prologue + allow");
        assert!(evaluate(&p, DEV_BLOCK, 259, 0, R | W | M));
    }

    #[test]
    fn a_refused_program_reports_the_verifier_log() {
        // SAFETY: plain getter.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        // r0 is never set before exit.
        let err = load(&[exit()]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("verifier log: ") && msg.contains("R0"), "{msg}");
    }

    #[test]
    fn oci_rules_parse_with_wildcards_and_errors_name_the_field() {
        let d: LinuxDeviceCgroup = serde_json::from_str(r#"{"allow":true,"type":"c","major":136,"minor":-1,"access":"rw"}"#).unwrap();
        assert_eq!(
            Rule::from_oci(&d).unwrap(),
            Some(Rule { allow: true, typ: Some(DEV_CHAR), major: Some(136), minor: None, access: R | W })
        );
        let d: LinuxDeviceCgroup = serde_json::from_str(r#"{"allow":false}"#).unwrap();
        assert_eq!(Rule::from_oci(&d).unwrap(), Some(Rule { allow: false, typ: None, major: None, minor: None, access: R | W | M }));
        assert!(format!("{:#}", Rule::parse(true, "c 1:3 rwx").unwrap_err()).contains("'x'"));
        assert!(format!("{:#}", Rule::parse(true, "q 1:3 r").unwrap_err()).contains("\"q\""));
    }
}
