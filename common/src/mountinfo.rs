//! Where filesystems are mounted, from `/proc/self/mountinfo`: the cgroup v2 root and bpffs
//! are not at the same place on every node (e.g. `/sys/fs/cgroup/unified` on hybrid hosts).
use std::{fs, io, path::PathBuf, string::String, vec::Vec};

/// Mount points of every filesystem of type `fstype`, in mount order.
pub fn mount_points(fstype: &str) -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse(&text, fstype))
}

/// Every mount as (mount point, filesystem type), in mount order.
pub fn mounts() -> io::Result<Vec<(PathBuf, String)>> {
    Ok(parse_all(&fs::read_to_string("/proc/self/mountinfo")?))
}

/// Parses mountinfo text: `id parent major:minor root mountpoint options [tags] - type source ...`.
pub fn parse(text: &str, fstype: &str) -> Vec<PathBuf> {
    parse_all(text)
        .into_iter()
        .filter(|(_, t)| t == fstype)
        .map(|(mount_point, _)| mount_point)
        .collect()
}

/// Parses mountinfo text into (mount point, filesystem type) pairs.
pub fn parse_all(text: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let fstype = right.split(' ').next()?;
            Some((PathBuf::from(unescape(mount_point)), String::from(fstype)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 25 0:31 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu
40 25 0:35 / /sys/fs/bpf rw,nosuid shared:14 - bpf bpf rw,mode=700
41 25 0:36 / /tmp/with\\040space rw - bpf bpf rw";

    #[test]
    fn finds_cgroup2_and_bpffs() {
        assert_eq!(
            parse(SAMPLE, "cgroup2"),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        assert_eq!(
            parse(SAMPLE, "bpf"),
            [
                PathBuf::from("/sys/fs/bpf"),
                PathBuf::from("/tmp/with space")
            ]
        );
        assert!(parse(SAMPLE, "tmpfs").is_empty());
    }
}
