//! The layout version of a pin directory's maps. An upgraded agent adopts pinned maps by
//! name, so a changed key, value or size would be misread; the pin directory therefore
//! carries a marker, an empty directory `layout-vN` (bpffs holds no plain files), and an
//! agent adopts only maps of its own [`MAP_LAYOUT`], or of a layout it knows how to upgrade.
//! Pins from before the marker existed are layout 1.

use std::path::Path;

use anyhow::{Context, Result, bail};
use aya::maps::{HashMap, LpmTrie, Map, MapData};
use vsteer_common::{MAP_LAYOUT, ServiceValue, VipKey, map_names};

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
    /// but for the service map (preallocated then) and the range map (no family byte, one
    /// entry fewer). Their entries are read, the two maps dropped and created anew, and the
    /// entries written into the new ones before the programs are attached; every other map
    /// is adopted as it is, so steering goes on through the upgrade.
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

/// What [`check`] found: the services to write into the new maps, and whether the
/// directory is to be marked with this agent's layout once its maps are loaded.
#[must_use = "mark the directory with `Checked::mark` once the maps are loaded"]
pub struct Checked {
    pub carried: Vec<(VipKey, ServiceValue)>,
    mark: bool,
}

/// Checks `pin_dir` (which exists, and which this agent owns) before anything is loaded
/// from it. For pins of layout 1, drops the service and range maps, carrying the services
/// they held, to be written into the new maps.
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
    let action = decide(&Found { markers, maps }, pin_dir)?;
    let carried = if action == Action::UpgradeFrom1 {
        upgrade_from_1(pin_dir)?
    } else {
        Vec::new()
    };
    Ok(Checked {
        carried,
        mark: action != Action::Adopt,
    })
}

impl Checked {
    /// Marks the directory with this agent's layout (replacing a layout-1 marker): only
    /// once the maps are loaded, so an agent that fails to load leaves a directory an
    /// agent of layout 1 can still use (after an upgrade that dropped the two maps, it
    /// creates them anew).
    pub fn mark(self, pin_dir: &Path) -> Result<()> {
        if !self.mark {
            return Ok(());
        }
        let old = pin_dir.join(marker(1));
        match std::fs::remove_dir(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", old.display())),
        }
        let path = pin_dir.join(marker(MAP_LAYOUT));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))
    }
}

/// The two maps layout 2 makes anew: their entries are read, then their pins removed.
const REMADE: [&str; 2] = [map_names::SERVICES, map_names::RANGES];

/// Reads and drops what layout 2 makes anew. The layout-1 marker stays until the new maps
/// are loaded (see [`Checked::mark`]), so an agent stopped halfway leaves pins of layout 1,
/// which the next one upgrades (the programs attached meanwhile keep the dropped maps alive
/// and steering).
fn upgrade_from_1(pin_dir: &Path) -> Result<Vec<(VipKey, ServiceValue)>> {
    let carried = read_services(pin_dir)?;
    for name in REMADE {
        let path = pin_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    tracing::info!(
        pin_dir = %pin_dir.display(),
        services = carried.len(),
        "upgrading pins of map layout 1 to {MAP_LAYOUT}: the service and range maps are made \
         anew with the services they held, the other maps adopted as they are"
    );
    Ok(carried)
}

/// The services of a layout-1 pin directory's service and range maps (either may be
/// missing: a range map came late in layout 1).
fn read_services(pin_dir: &Path) -> Result<Vec<(VipKey, ServiceValue)>> {
    let open = |name: &str| -> Result<Option<MapData>> {
        let path = pin_dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        MapData::from_pin(&path)
            .map(Some)
            .with_context(|| format!("opening {} to upgrade it", path.display()))
    };
    let Some(exact) = open(map_names::SERVICES)? else {
        return Ok(Vec::new());
    };
    let exact = HashMap::try_from(Map::HashMap(exact))
        .context("the pinned VSTEER_SERVICES of layout 1 has an unexpected layout")?;
    let ranges = match open(map_names::RANGES)? {
        Some(data) => Some(
            LpmTrie::try_from(Map::LpmTrie(data))
                .context("the pinned VSTEER_RANGES of layout 1 has an unexpected layout")?,
        ),
        None => None,
    };
    // A layout-1 range key has a zero where the family now is; the trie key is made again
    // from the range (see `VipKey::range_key`), so only the range itself is read.
    crate::service_maps::read_both(&exact, ranges.as_ref())
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
    fn an_upgrade_from_1_keeps_the_adopted_maps_and_replaces_the_marker() {
        // Plain files stand in for the maps that are adopted (never opened here); the two
        // remade ones are absent (a kernel test upgrades real ones).
        let dir = tempfile::tempdir().unwrap();
        let pins = dir.path();
        std::fs::create_dir(pins.join(marker(1))).unwrap();
        let adopted = map_names::PINNED
            .iter()
            .filter(|name| !REMADE.contains(name));
        for name in adopted.clone() {
            std::fs::write(pins.join(name), b"").unwrap();
        }
        let checked = check(pins).unwrap();
        assert!(checked.carried.is_empty());
        assert!(pins.join(marker(1)).is_dir(), "marked only once loaded");
        checked.mark(pins).unwrap();
        for name in adopted {
            assert!(pins.join(name).exists(), "{name}");
        }
        assert!(!pins.join(marker(1)).exists());
        assert!(pins.join(marker(MAP_LAYOUT)).is_dir());
        // Again: this layout, adopted as it is.
        let checked = check(pins).unwrap();
        assert!(checked.carried.is_empty());
        checked.mark(pins).unwrap();
        assert!(pins.join(map_names::COUNTERS).exists());
    }
}
