//! The spec's seccomp profile, compiled with libseccomp and loaded last
//! before the process runs. Notify actions (a listener socket) are refused.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext,
    ScmpSyscall,
};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use crate::error::{Error, Result};

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Seccomp(
                "SCMP_ACT_NOTIFY (a seccomp listener) is not supported".into(),
            ))
        }
    })
}

fn op(o: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

/// Compiles the profile (nothing is loaded yet): every error, such as an
/// unknown syscall name, shows at create time, before the process exists.
pub fn compile(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let e =
        |what: &str, err: libseccomp::error::SeccompError| Error::Seccomp(format!("{what}: {err}"));
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|err| e("new filter", err))?;
    // The spec's noNewPrivileges decides, not libseccomp's default.
    ctx.set_ctl_nnp(false)
        .map_err(|err| e("nnp attribute", err))?;
    for arch in s.architectures().iter().flatten() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(|err| e(&format!("architecture {name}"), err))?;
        if a != ScmpArch::Native {
            ctx.add_arch(a)
                .map_err(|err| e(&format!("add architecture {name}"), err))?;
        }
    }
    for flag in s.flags().iter().flatten() {
        if matches!(
            flag,
            oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagLog
        ) {
            ctx.set_filter_attr(ScmpFilterAttr::CtlLog, 1)
                .map_err(|err| e("log flag", err))?;
        }
    }
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            let Some(sc) = resolve(name)? else {
                // A syscall of another architecture only (mmap2, socketcall, ...).
                continue;
            };
            let conds: Vec<ScmpArgCompare> = rule
                .args()
                .iter()
                .flatten()
                .map(|a| {
                    let (v, datum) = match a.op() {
                        LinuxSeccompOperator::ScmpCmpMaskedEq => {
                            (a.value(), a.value_two().unwrap_or(0))
                        }
                        _ => (a.value(), a.value()),
                    };
                    ScmpArgCompare::new(a.index() as u32, op(a.op(), v), datum)
                })
                .collect();
            let res = if conds.is_empty() {
                ctx.add_rule(act, sc)
            } else {
                ctx.add_rule_conditional(act, sc, &conds)
            };
            res.map_err(|err| e(&format!("rule for {name}"), err))?;
        }
    }
    Ok(ctx)
}

/// The native number of `name`; `None` for a syscall that exists only on
/// other architectures (profiles list those for 32-bit and other ABIs);
/// an error for a name no architecture knows.
fn resolve(name: &str) -> Result<Option<ScmpSyscall>> {
    if let Ok(sc) = ScmpSyscall::from_name(name) {
        return Ok(Some(sc));
    }
    let others = [
        ScmpArch::X86,
        ScmpArch::X32,
        ScmpArch::Arm,
        ScmpArch::Aarch64,
        ScmpArch::Mips,
        ScmpArch::Mips64,
        ScmpArch::Ppc,
        ScmpArch::Ppc64,
        ScmpArch::S390,
        ScmpArch::S390X,
        ScmpArch::Riscv64,
        ScmpArch::Parisc,
        ScmpArch::M68k,
        ScmpArch::Loongarch64,
    ];
    if others
        .iter()
        .any(|a| ScmpSyscall::from_name_by_arch(name, *a).is_ok())
    {
        return Ok(None);
    }
    Err(Error::Seccomp(format!("unknown syscall {name:?}")))
}

/// Loads a compiled filter into this thread.
pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load()
        .map_err(|e| Error::Seccomp(format!("load filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_syscall_is_refused() {
        let s: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["no_such_syscall"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let err = compile(&s).err().unwrap();
        assert!(
            err.to_string()
                .contains("unknown syscall \"no_such_syscall\""),
            "{err}"
        );
    }

    #[test]
    fn crius_default_profile_compiles() {
        let text = include_str!("../../crius-oci/src/spec/seccomp_default.json");
        let s: LinuxSeccomp = serde_json::from_str(text).unwrap();
        compile(&s).unwrap();
    }

    #[test]
    fn profile_with_conditions_compiles() {
        let s: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        )
        .unwrap();
        compile(&s).unwrap();
    }
}
