//! The layout version of a pin directory's maps. An upgraded agent adopts pinned maps by
//! name, so a changed key, value or size would be misread; the pin directory therefore
//! carries a marker, an empty directory `layout-vN` (bpffs holds no plain files), and an
//! agent adopts only maps of its own [`MAP_LAYOUT`]. Pins from before the marker existed
//! are layout 1.

use std::path::Path;

use anyhow::{Context, Result, bail};
use vsteer_common::{MAP_LAYOUT, map_names};

pub const MARKER_PREFIX: &str = "layout-v";

/// The marker directory's name for `layout`.
pub fn marker(layout: u32) -> String {
    format!("{MARKER_PREFIX}{layout}")
}

/// What the pin directory holds, as far as the layout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// The layouts of the marker directories present.
    markers: Vec<u32>,
    /// Whether any pinned map is there.
    maps: bool,
}

/// Whether this agent may use the pins: `Ok(true)` when the directory is to be marked.
fn decide(found: &Found, pin_dir: &Path) -> Result<bool> {
    match (found.markers.as_slice(), found.maps) {
        ([layout], _) if *layout == MAP_LAYOUT => Ok(false),
        ([], false) => Ok(true),
        // Pinned before markers existed: layout 1.
        ([], true) if MAP_LAYOUT == 1 => Ok(true),
        (markers, _) => {
            let found = match markers {
                [] => "1 (no marker)".to_string(),
                _ => markers
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" and "),
            };
            bail!(
                "the maps pinned in {dir} have layout {found}, and this vsteer uses layout \
                 {MAP_LAYOUT}: it cannot adopt them. Run `vsteer uninstall --pin-dir {dir}` \
                 (either version; steering stops until this agent starts and fills new maps), \
                 or start this agent on another --pin-dir",
                dir = pin_dir.display()
            )
        }
    }
}

/// What [`check`] found: whether the directory is to be marked with this agent's layout
/// once its maps are loaded.
#[must_use = "mark the directory with `Checked::mark` once the maps are loaded"]
pub struct Checked {
    mark: bool,
}

/// Checks `pin_dir` (which exists, and which this agent owns) before anything is loaded
/// from it.
pub fn check(pin_dir: &Path) -> Result<Checked> {
    let mut markers = Vec::new();
    for entry in std::fs::read_dir(pin_dir)
        .with_context(|| format!("reading pin directory {}", pin_dir.display()))?
    {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(layout) = name.strip_prefix(MARKER_PREFIX) {
            // An unreadable marker counts as a layout that is not ours.
            markers.push(layout.parse().unwrap_or(u32::MAX));
        }
    }
    let maps = map_names::PINNED
        .iter()
        .any(|name| pin_dir.join(name).exists());
    let mark = decide(&Found { markers, maps }, pin_dir)?;
    Ok(Checked { mark })
}

impl Checked {
    /// Marks a fresh directory with this agent's layout: only once the maps are loaded, so
    /// an agent that fails to load (a verifier or kernel refusal) leaves a directory that an
    /// agent of another layout can still use.
    pub fn mark(self, pin_dir: &Path) -> Result<()> {
        if !self.mark {
            return Ok(());
        }
        let path = pin_dir.join(marker(MAP_LAYOUT));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(markers: &[u32], maps: bool) -> Result<bool> {
        let found = Found {
            markers: markers.to_vec(),
            maps,
        };
        decide(&found, Path::new("/sys/fs/bpf/vsteer"))
    }

    #[test]
    fn only_pins_of_this_layout_are_adopted() {
        assert!(decision(&[], false).unwrap(), "a fresh directory is marked");
        assert!(!decision(&[MAP_LAYOUT], true).unwrap());
        assert!(!decision(&[MAP_LAYOUT], false).unwrap());
        // Pins from before the marker are layout 1, which is not this one.
        assert_ne!(MAP_LAYOUT, 1);
        for (markers, maps) in [
            (&[][..], true),
            (&[1][..], true),
            (&[MAP_LAYOUT + 1][..], true),
            (&[0][..], true),
            (&[MAP_LAYOUT, 7][..], true),
            (&[u32::MAX][..], false),
        ] {
            let message = decision(markers, maps).unwrap_err().to_string();
            assert!(
                message.contains("vsteer uninstall --pin-dir /sys/fs/bpf/vsteer"),
                "{message}"
            );
            assert!(
                message.contains(&format!("this vsteer uses layout {MAP_LAYOUT}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_directory_is_marked_only_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path();
        let checked = check(pins).unwrap();
        assert!(
            !pins.join(marker(MAP_LAYOUT)).exists(),
            "not before the maps load"
        );
        checked.mark(pins).unwrap();
        assert!(pins.join(marker(MAP_LAYOUT)).is_dir());
        check(pins).unwrap().mark(pins).unwrap();
    }
}
