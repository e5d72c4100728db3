//! Device rules for cgroup v2: the spec's ordered `linux.resources.devices`
//! reduced to what a v1 devices cgroup would hold after the same writes (a
//! default plus exceptions), and that state compiled into an eBPF program of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE` (loaded and attached by `bpf.rs`).
//!
//! The reduction follows the kernel's v1 devices controller, as runc does:
//! - a rule of type `a` (or without a type) resets everything: "deny all"
//!   leaves an allow-list with nothing in it, "allow all" a deny-list;
//! - in an allow-list an allow rule adds its access to the exception for the
//!   same (type, major, minor) and a deny rule takes it away; in a deny-list
//!   the other way round;
//! - taking access away from one device that a wildcard exception still grants
//!   (or still denies) cannot be expressed in v1, which silently ignores it:
//!   that is refused with an error instead of leaving a false sense of safety.
//!
//! The evaluation follows v1 too: a device is allowed by an allow-list when
//! one exception covers every access asked for at once, and denied by a
//! deny-list when one exception shares any access asked for. The second is
//! stricter than runc's program (which asks a deny exception to cover the
//! whole request, so `deny c 1:3 w` there lets an `O_RDWR` open through).
//!
//! The program is built here rather than with a crate: youki's `libcgroups`
//! builds its filter with `rbpf` and loads it through `libbpf-sys` (libbpf's C
//! sources built by cc, plus libelf and zlib), and `aya` loads programs from
//! compiled BPF objects, which needs a BPF toolchain. The program needs six
//! kinds of instruction, encoded below.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// `BPF_DEVCG_DEV_BLOCK` / `BPF_DEVCG_DEV_CHAR`: the low 16 bits of the
/// program context's `access_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Block = 1,
    Char = 2,
}

/// `BPF_DEVCG_ACC_MKNOD`, `_READ`, `_WRITE`: the high 16 bits of `access_type`.
pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The devices an exception names; `None` is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Devices {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// What a v1 devices cgroup would hold after the rules: a default and the
/// exceptions to it, each with its access bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFilter {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Devices, u8>,
}

/// One parsed rule: `None` devices for type `a`.
struct Rule {
    allow: bool,
    devices: Option<Devices>,
    access: u8,
}

fn rule_err(i: usize, reason: String) -> Error {
    Error::Spec(format!("linux.resources.devices[{i}]: {reason}"))
}

fn parse_rule(i: usize, r: &LinuxDeviceCgroup) -> Result<Rule> {
    let kind = match r.typ().unwrap_or_default() {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(Kind::Block),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(Kind::Char),
        LinuxDeviceType::P => {
            return Err(rule_err(
                i,
                "type \"p\" (fifo) cannot be filtered by the devices cgroup: use a, b, c or u"
                    .into(),
            ))
        }
    };
    let number = |n: Option<i64>, what: &str| -> Result<Option<u32>> {
        match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                rule_err(
                    i,
                    format!("{what} {n} is neither a device number nor -1 (any)"),
                )
            }),
        }
    };
    let major = number(r.major(), "major")?;
    let minor = number(r.minor(), "minor")?;
    // No access given means all of it, as the v1 rules are written.
    let access = match r.access().as_deref() {
        None => ACC_ALL,
        Some(s) => s.chars().try_fold(0u8, |acc, c| match c {
            'r' => Ok(acc | ACC_READ),
            'w' => Ok(acc | ACC_WRITE),
            'm' => Ok(acc | ACC_MKNOD),
            _ => Err(rule_err(
                i,
                format!("access {s:?} has {c:?}: use r, w and m"),
            )),
        })?,
    };
    Ok(Rule {
        allow: r.allow(),
        devices: kind.map(|kind| Devices { kind, major, minor }),
        access,
    })
}

fn access_str(bits: u8) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

fn devices_str(d: &Devices) -> String {
    let n = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
    let t = match d.kind {
        Kind::Block => 'b',
        Kind::Char => 'c',
    };
    format!("{t} {}:{}", n(d.major), n(d.minor))
}

impl DeviceFilter {
    /// Applies the rules in order to a cgroup that starts with every device denied.
    pub fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Self> {
        let mut f = DeviceFilter {
            default_allow: false,
            exceptions: BTreeMap::new(),
        };
        for (i, r) in rules.iter().enumerate() {
            let rule = parse_rule(i, r)?;
            let Some(devices) = rule.devices else {
                f.default_allow = rule.allow;
                f.exceptions.clear();
                continue;
            };
            if rule.allow == f.default_allow {
                f.remove(i, devices, rule.access)?;
            } else if rule.access != 0 {
                *f.exceptions.entry(devices).or_insert(0) |= rule.access;
            }
        }
        Ok(f)
    }

    /// Takes `access` away from the exception for exactly `devices`, refusing
    /// when a wider exception would keep granting (or denying) some of it.
    fn remove(&mut self, i: usize, devices: Devices, access: u8) -> Result<()> {
        let wider = [
            Devices {
                major: None,
                ..devices
            },
            Devices {
                minor: None,
                ..devices
            },
            Devices {
                major: None,
                minor: None,
                ..devices
            },
        ];
        for w in wider.iter().filter(|w| **w != devices) {
            if let Some(bits) = self.exceptions.get(w).filter(|b| **b & access != 0) {
                return Err(rule_err(
                    i,
                    format!(
                        "{} {} {} cannot take access out of the earlier rule {} {} {}: make that rule narrower or drop it",
                        if self.default_allow { "allow" } else { "deny" },
                        devices_str(&devices),
                        access_str(access),
                        if self.default_allow { "deny" } else { "allow" },
                        devices_str(w),
                        access_str(*bits),
                    ),
                ));
            }
        }
        if let Some(bits) = self.exceptions.get_mut(&devices) {
            *bits &= !access;
            if *bits == 0 {
                self.exceptions.remove(&devices);
            }
        }
        Ok(())
    }

    /// The program: 1 (allow) or 0 (deny) for the context in r1,
    /// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
    /// with `access_type = access << 16 | type`.
    pub fn program(&self) -> Vec<Insn> {
        let mut p = vec![
            Insn::ldx_w(R2, R1, 0),
            Insn::alu64_imm(BPF_AND, R2, 0xffff),
            Insn::ldx_w(R3, R1, 0),
            Insn::alu64_imm(BPF_RSH, R3, 16),
            Insn::ldx_w(R4, R1, 4),
            Insn::ldx_w(R5, R1, 8),
        ];
        // Every exception has the action opposite to the default, so their
        // order does not matter: the first one that matches decides.
        let action = i32::from(!self.default_allow);
        for (d, access) in &self.exceptions {
            p.extend(exception_block(d, *access, self.default_allow, action));
        }
        p.push(Insn::mov64_imm(R0, i32::from(self.default_allow)));
        p.push(Insn::exit());
        p
    }
}

/// Instructions that return `action` when the context is one of `d` and the
/// access asked for is covered by (allow-list) or meets (deny-list) `access`,
/// and otherwise fall through to what follows.
fn exception_block(d: &Devices, access: u8, default_allow: bool, action: i32) -> Vec<Insn> {
    // Jumps to the block's end are written with offset 0 and patched below.
    let mut b = vec![Insn::jmp_imm(BPF_JNE, R2, d.kind as i32, 0)];
    if default_allow {
        // A deny exception: any shared access bit denies.
        if access != ACC_ALL {
            b.push(Insn::mov64_reg(R1, R3));
            b.push(Insn::alu64_imm(BPF_AND, R1, i32::from(access)));
            b.push(Insn::jmp_imm(BPF_JEQ, R1, 0, 0));
        }
    } else if access != ACC_ALL {
        // An allow exception: every access bit asked for must be granted.
        b.push(Insn::mov64_reg(R1, R3));
        b.push(Insn::alu64_imm(BPF_AND, R1, i32::from(!access & ACC_ALL)));
        b.push(Insn::jmp_imm(BPF_JNE, R1, 0, 0));
    }
    for (reg, n) in [(R4, d.major), (R5, d.minor)] {
        let Some(n) = n else { continue };
        // An immediate is sign-extended to 64 bits; the context's u32 is not.
        match i32::try_from(n) {
            Ok(imm) => b.push(Insn::jmp_imm(BPF_JNE, reg, imm, 0)),
            Err(_) => {
                b.extend(Insn::ld_imm64(R1, u64::from(n)));
                b.push(Insn::jmp_reg(BPF_JNE, reg, R1, 0));
            }
        }
    }
    b.push(Insn::mov64_imm(R0, action));
    b.push(Insn::exit());
    let len = b.len();
    for (i, insn) in b.iter_mut().enumerate() {
        if insn.code & 0x07 == BPF_JMP && insn.code != BPF_JMP | BPF_EXIT {
            insn.off = i16::try_from(len - i - 1).expect("a block is a few instructions");
        }
    }
    b
}

// The instruction set's encodings (include/uapi/linux/bpf.h, bpf_common.h).
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_ALU64: u8 = 0x07;
pub const BPF_W: u8 = 0x00;
pub const BPF_DW: u8 = 0x18;
pub const BPF_IMM: u8 = 0x00;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;
pub const BPF_AND: u8 = 0x50;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_EXIT: u8 = 0x90;

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;

/// One `struct bpf_insn`: opcode, destination and source registers (a
/// bitfield byte), offset and immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        // `__u8 dst_reg:4, src_reg:4`: the first bitfield takes the low bits
        // on little-endian targets and the high bits on big-endian ones.
        let regs = if cfg!(target_endian = "little") {
            (src << 4) | (dst & 0x0f)
        } else {
            (dst << 4) | (src & 0x0f)
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    pub fn dst(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0x0f
        } else {
            self.regs >> 4
        }
    }

    pub fn src(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0x0f
        }
    }

    fn ldx_w(dst: u8, src: u8, off: i16) -> Self {
        Self::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    fn alu64_imm(op: u8, dst: u8, imm: i32) -> Self {
        Self::new(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
    }

    fn mov64_imm(dst: u8, imm: i32) -> Self {
        Self::alu64_imm(BPF_MOV, dst, imm)
    }

    fn mov64_reg(dst: u8, src: u8) -> Self {
        Self::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Self::new(BPF_JMP | op | BPF_K, dst, 0, off, imm)
    }

    fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(BPF_JMP | op | BPF_X, dst, src, off, 0)
    }

    /// A 64-bit immediate takes two instruction slots.
    fn ld_imm64(dst: u8, v: u64) -> [Self; 2] {
        [
            Self::new(BPF_LD | BPF_DW | BPF_IMM, dst, 0, 0, v as u32 as i32),
            Self::new(0, 0, 0, 0, (v >> 32) as u32 as i32),
        ]
    }

    fn exit() -> Self {
        Self::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    fn filter(json: &str) -> DeviceFilter {
        DeviceFilter::from_rules(&rules(json)).unwrap()
    }

    /// Runs `prog` as the kernel would for one device access: the context is
    /// `struct bpf_cgroup_dev_ctx` in memory, r1 points at it, r0 is the answer.
    fn run(prog: &[Insn], kind: Kind, major: u32, minor: u32, access: u8) -> bool {
        let mut ctx = [0u8; 12];
        ctx[0..4].copy_from_slice(&((u32::from(access) << 16) | kind as u32).to_ne_bytes());
        ctx[4..8].copy_from_slice(&major.to_ne_bytes());
        ctx[8..12].copy_from_slice(&minor.to_ne_bytes());
        const CTX: u64 = 0x1000;
        let mut r = [0u64; 11];
        r[1] = CTX;
        let mut pc = 0usize;
        for _ in 0..4096 {
            let i = prog[pc];
            let (dst, src) = (usize::from(i.dst()), usize::from(i.src()));
            let imm = i.imm as i64 as u64;
            pc += 1;
            match i.code {
                0x61 => {
                    let at = usize::try_from(r[src] - CTX).unwrap() + i.off as usize;
                    r[dst] = u64::from(u32::from_ne_bytes(ctx[at..at + 4].try_into().unwrap()));
                }
                0x18 => {
                    r[dst] = u64::from(i.imm as u32) | (u64::from(prog[pc].imm as u32) << 32);
                    pc += 1;
                }
                0x57 => r[dst] &= imm,
                0x77 => r[dst] >>= imm,
                0xb7 => r[dst] = imm,
                0xbf => r[dst] = r[src],
                0x15 | 0x55 | 0x5d => {
                    let b = if i.code == 0x5d { r[src] } else { imm };
                    if (r[dst] == b) == (i.code == 0x15) {
                        assert!(i.off >= 0, "backward jump at {}", pc - 1);
                        pc += i.off as usize;
                    }
                }
                0x95 => {
                    assert!(r[0] <= 1, "r0 = {}", r[0]);
                    return r[0] == 1;
                }
                c => panic!("unexpected opcode {c:#x} at {}", pc - 1),
            }
            assert!(pc < prog.len(), "ran off the end");
        }
        panic!("no exit");
    }

    const R: u8 = ACC_READ;
    const W: u8 = ACC_WRITE;
    const M: u8 = ACC_MKNOD;
    use Kind::{Block as B, Char as C};

    fn check(json: &str, cases: &[(Kind, u32, u32, u8, bool)]) {
        let p = filter(json).program();
        for &(k, maj, min, acc, want) in cases {
            assert_eq!(
                run(&p, k, maj, min, acc),
                want,
                "{k:?} {maj}:{min} {} with {json}",
                access_str(acc)
            );
        }
    }

    #[test]
    fn allow_list_grants_only_what_one_rule_covers() {
        check(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":5,"access":"r"},
                {"allow":true,"type":"c","major":136,"access":"rw"},
                {"allow":true,"type":"b","major":8,"minor":0,"access":"m"},
                {"allow":true,"type":"u","major":4000000000,"minor":1}]"#,
            &[
                (C, 1, 3, R, true),
                (C, 1, 3, R | W, true),
                (C, 1, 3, M, true),
                (C, 1, 5, R, true),
                (C, 1, 5, W, false),
                (C, 1, 5, R | W, false),
                (C, 136, 7, R | W, true),
                (C, 136, 0, M, false),
                (B, 1, 3, R, false),
                (B, 8, 0, M, true),
                (B, 8, 0, R, false),
                (C, 8, 0, M, false),
                (C, 4000000000, 1, R, true),
                (C, 4000000000, 2, R, false),
                (C, 2, 3, R, false),
                (C, 3, 1, R, false),
            ],
        );
    }

    #[test]
    fn later_rules_take_access_back_and_wildcards_reset() {
        let base = r#"{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
            {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}"#;
        check(
            &format!("[{base}]"),
            &[
                (C, 1, 3, R, true),
                (C, 1, 3, W, false),
                (C, 1, 3, R | W, false),
                (C, 1, 3, M, true),
            ],
        );
        check(
            &format!(r#"[{base}, {{"allow":true,"type":"a"}}]"#),
            &[(C, 1, 3, W, true), (B, 9, 9, R | W | M, true)],
        );
        check(
            &format!(r#"[{base}, {{"allow":false}}]"#),
            &[(C, 1, 3, R, false), (B, 9, 9, R, false)],
        );
        // Access granted in pieces adds up, as v1 merges them.
        check(
            r#"[{"allow":false},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"r"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"w"}]"#,
            &[(C, 1, 3, R | W, true), (C, 1, 3, M, false)],
        );
        // No rule at all: every device denied.
        check("[]", &[(C, 1, 3, R, false)]);
    }

    #[test]
    fn deny_list_denies_any_shared_access() {
        check(
            r#"[{"allow":true,"type":"a"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"},
                {"allow":false,"type":"b","minor":0,"access":"rwm"},
                {"allow":false,"type":"c","major":5,"access":"rwm"},
                {"allow":true,"type":"c","major":5,"access":"m"}]"#,
            &[
                (C, 1, 3, R, true),
                (C, 1, 3, W, false),
                (C, 1, 3, R | W, false),
                (C, 1, 5, R | W, true),
                (B, 7, 0, R, false),
                (B, 7, 1, R, true),
                (C, 5, 0, R, false),
                (C, 5, 0, M, true),
                (C, 5, 0, M | W, false),
            ],
        );
    }

    #[test]
    fn holes_in_a_wildcard_are_refused() {
        for json in [
            r#"[{"allow":false},{"allow":true,"type":"c","major":1,"access":"rwm"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"r"}]"#,
            r#"[{"allow":true},{"allow":false,"type":"c","access":"w"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]"#,
        ] {
            let e = DeviceFilter::from_rules(&rules(json)).unwrap_err();
            assert!(e.to_string().contains("cannot take access out"), "{e}");
        }
        // No shared access: nothing to punch.
        check(
            r#"[{"allow":true},{"allow":false,"type":"c","access":"w"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"r"}]"#,
            &[(C, 1, 3, W, false), (C, 1, 3, R, true)],
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        for (json, want) in [
            (r#"[{"allow":true,"type":"p"}]"#, "fifo"),
            (
                r#"[{"allow":true,"type":"c","major":1,"access":"rx"}]"#,
                "use r, w and m",
            ),
            (r#"[{"allow":true,"type":"c","major":-5}]"#, "major -5"),
            (r#"[{"allow":true,"type":"b","minor":4294967296}]"#, "minor"),
        ] {
            let e = DeviceFilter::from_rules(&rules(json)).unwrap_err();
            assert!(e.to_string().contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn program_encoding() {
        let p = filter(
            r#"[{"allow":false},{"allow":true,"type":"c","major":1,"minor":3,"access":"r"}]"#,
        )
        .program();
        let want = [
            (0x61, R2, R1, 0, 0), // r2 = ctx->access_type
            (0x57, R2, 0, 0, 0xffff),
            (0x61, R3, R1, 0, 0),
            (0x77, R3, 0, 0, 16),
            (0x61, R4, R1, 4, 0), // r4 = ctx->major
            (0x61, R5, R1, 8, 0), // r5 = ctx->minor
            (0x55, R2, 0, 7, 2),  // not a char device: next block
            (0xbf, R1, R3, 0, 0),
            (0x57, R1, 0, 0, 5), // asks for w or m: next block
            (0x55, R1, 0, 4, 0),
            (0x55, R4, 0, 3, 1),
            (0x55, R5, 0, 2, 3),
            (0xb7, R0, 0, 0, 1),
            (0x95, 0, 0, 0, 0),
            (0xb7, R0, 0, 0, 0),
            (0x95, 0, 0, 0, 0),
        ];
        let got: Vec<_> = p
            .iter()
            .map(|i| (i.code, i.dst(), i.src(), i.off, i.imm))
            .collect();
        assert_eq!(got, want);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        if cfg!(target_endian = "little") {
            // SAFETY: Insn is repr(C) plain data of 8 bytes.
            let raw: u64 = unsafe { std::mem::transmute(p[0]) };
            assert_eq!(raw, 0x0000_0000_0000_1261);
        }
    }
}
