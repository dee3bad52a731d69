//! The layout version of a pin directory's maps. An upgraded agent adopts pinned maps by
//! name, so a changed key, value or size would be misread; the pin directory therefore
//! carries a marker, an empty directory `layout-vN` (bpffs holds no plain files), and an
//! agent adopts only maps of its own [`MAP_LAYOUT`], or of a layout it knows how to upgrade.
//! Pins from before the marker existed are layout 1.

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

/// What this agent does with the pins it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// They are of this layout.
    Adopt,
    /// A fresh directory: mark it with this layout.
    Mark,
    /// Layout 1 (marked, or pinned before markers existed): its maps are those of layout 2
    /// but for the range map's key, so drop that map (the first apply writes the ranges
    /// again) and adopt the rest, steering on through the upgrade.
    UpgradeFrom1,
}

/// Whether this agent may use the pins, and how.
fn decide(found: &Found, pin_dir: &Path) -> Result<Action> {
    match (found.markers.as_slice(), found.maps) {
        ([layout], _) if *layout == MAP_LAYOUT => Ok(Action::Adopt),
        ([], false) => Ok(Action::Mark),
        // Pinned before markers existed: layout 1.
        ([1], _) | ([], true) if MAP_LAYOUT == 2 => Ok(Action::UpgradeFrom1),
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

/// Checks `pin_dir` (which exists, and which this agent owns) before anything is loaded
/// from it: marks a fresh one with this agent's layout, and upgrades one of layout 1.
pub fn check(pin_dir: &Path) -> Result<()> {
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
    let action = decide(&Found { markers, maps }, pin_dir)?;
    if action == Action::UpgradeFrom1 {
        upgrade_from_1(pin_dir)?;
    }
    if action != Action::Adopt {
        let path = pin_dir.join(marker(MAP_LAYOUT));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// Drops what layout 2 reads differently. In this order so that an agent stopped halfway
/// leaves pins that read as layout 1 again (no marker), which the next one upgrades.
fn upgrade_from_1(pin_dir: &Path) -> Result<()> {
    let ranges = pin_dir.join(map_names::RANGES);
    let dropped = match std::fs::remove_file(&ranges) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("removing {}", ranges.display())),
    };
    let old = pin_dir.join(marker(1));
    match std::fs::remove_dir(&old) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", old.display())),
    }
    tracing::info!(
        pin_dir = %pin_dir.display(),
        range_map_dropped = dropped,
        "upgrading pins of map layout 1 to {MAP_LAYOUT}: the other maps are adopted as they are, \
         the ranges are written again from the config"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(markers: &[u32], maps: bool) -> Result<Action> {
        let found = Found {
            markers: markers.to_vec(),
            maps,
        };
        decide(&found, Path::new("/sys/fs/bpf/vsteer"))
    }

    #[test]
    fn only_pins_of_this_layout_are_adopted_and_layout_1_is_upgraded() {
        assert_eq!(decision(&[], false).unwrap(), Action::Mark);
        assert_eq!(decision(&[MAP_LAYOUT], true).unwrap(), Action::Adopt);
        assert_eq!(decision(&[MAP_LAYOUT], false).unwrap(), Action::Adopt);
        // Pins from before the marker, or marked 1: upgraded.
        assert_eq!(MAP_LAYOUT, 2, "say what upgrades from layout 2 to the next");
        assert_eq!(decision(&[], true).unwrap(), Action::UpgradeFrom1);
        assert_eq!(decision(&[1], true).unwrap(), Action::UpgradeFrom1);
        assert_eq!(decision(&[1], false).unwrap(), Action::UpgradeFrom1);
        for markers in [
            &[MAP_LAYOUT + 1][..],
            &[0],
            &[MAP_LAYOUT, 7],
            &[1, 2],
            &[u32::MAX],
        ] {
            let message = decision(markers, true).unwrap_err().to_string();
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
    fn an_upgrade_from_1_drops_the_range_map_and_the_old_marker_only() {
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path();
        std::fs::create_dir(pins.join(marker(1))).unwrap();
        for name in map_names::PINNED {
            std::fs::write(pins.join(name), b"").unwrap();
        }
        check(pins).unwrap();
        for name in map_names::PINNED {
            assert_eq!(
                pins.join(name).exists(),
                name != map_names::RANGES,
                "{name}"
            );
        }
        assert!(!pins.join(marker(1)).exists());
        assert!(pins.join(marker(MAP_LAYOUT)).is_dir());
        // Again: this layout, adopted as it is.
        check(pins).unwrap();
        assert!(pins.join(map_names::SERVICES).exists());
    }
}
