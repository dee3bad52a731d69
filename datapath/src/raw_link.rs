//! BPF links made with the bpf(2) system call itself, for the one program kind whose aya 0.14
//! link cannot become an `FdLink` (and so cannot be pinned): cgroup getsockopt.
use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use anyhow::{Context, Result};

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
/// enum bpf_attach_type: BPF_CGROUP_GETSOCKOPT.
pub const CGROUP_GETSOCKOPT: u32 = 21;

/// union bpf_attr, as far as these two commands read it; the rest stays zero, as the kernel
/// requires of the bytes it does not know.
#[repr(C, align(8))]
struct Attr([u32; 32]);

/// `bpf(BPF_LINK_CREATE)`: attaches `program` to the cgroup `target` (flags 0: a link
/// coexisting with other programs). The link lasts as long as the returned fd or a pin.
pub fn create(
    program: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    attach_type: u32,
) -> Result<OwnedFd> {
    let mut attr = Attr([0; 32]);
    // link_create: prog_fd, target_fd, attach_type, flags.
    attr.0[0] = program.as_raw_fd() as u32;
    attr.0[1] = target.as_raw_fd() as u32;
    attr.0[2] = attach_type;
    let fd = bpf(BPF_LINK_CREATE, &mut attr).context("bpf(BPF_LINK_CREATE)")?;
    // SAFETY: a new descriptor the kernel just returned, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bpf(BPF_OBJ_PIN)`: pins the link (or any BPF object) `fd` at `path` on a bpffs.
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let name = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    let mut attr = Attr([0; 32]);
    // obj_pin: pathname (u64), bpf_fd, file_flags.
    let pointer = name.as_ptr() as u64;
    attr.0[0] = pointer as u32;
    attr.0[1] = (pointer >> 32) as u32;
    attr.0[2] = fd.as_raw_fd() as u32;
    bpf(BPF_OBJ_PIN, &mut attr)
        .with_context(|| format!("bpf(BPF_OBJ_PIN) at {}", path.display()))?;
    Ok(())
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> Result<i32> {
    // SAFETY: attr is a valid, zero-padded bpf_attr of the size passed; the kernel reads
    // (and for some commands writes) only within it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            size_of::<Attr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(rc as i32)
}
