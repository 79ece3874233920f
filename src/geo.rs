//! Offline geolocation over an `.mmdb` file.
//!
//! Two record shapes are understood: MaxMind's GeoIP2 (`country.iso_code`,
//! `names.en`, `subdivisions`, `city`, `location`) and the flat one of the
//! `@ip-location-db` packages (`country_code`, `city`, `state1`, `latitude`, ...).
//! Country names and centroids come from an ISO 3166 table, so a country-level
//! database still gives a name and map coordinates. The default database (CC BY 4.0,
//! NRO, through `@ip-location-db/geo-whois-asn-country-mmdb`) is embedded in the binary.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use maxminddb::Reader;
use rand::Rng;
use serde::Deserialize;

use crate::domain::{ClientIp, Location};

/// The database compiled into the binary.
static DEFAULT_DB: &[u8] = include_bytes!(env!("BUTTON_DEFAULT_MMDB"));

/// Attribution the default database's licence asks for, shown on the page.
pub const DEFAULT_DB_ATTRIBUTION: &str = "IP geolocation: geo-whois-asn-country (ip-location-db), built from data by the Number Resource Organization (nro.net), CC BY 4.0.";

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read.
    #[error("cannot read geo database {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a MaxMind DB.
    #[error("{what} is not a valid .mmdb database: {source}")]
    Format {
        /// The file, or "the embedded database".
        what: String,
        /// Why.
        source: maxminddb::MaxMindDbError,
    },
}

enum Bytes {
    Embedded(&'static [u8]),
    Mapped(memmap2::Mmap),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            Bytes::Embedded(b) => b,
            Bytes::Mapped(m) => m,
        }
    }
}

/// Looks up locations. Cheap to share: wrap it in an `Arc`.
pub struct GeoDb {
    reader: Reader<Bytes>,
    /// Whether an address we can't place (loopback, private) gets a random real one,
    /// as the original app does so that local runs show something on the map.
    fake_local: bool,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.reader.metadata.database_type)
            .field("fake_local", &self.fake_local)
            .finish()
    }
}

impl GeoDb {
    /// The embedded country-level database.
    pub fn embedded() -> Result<Self, GeoError> {
        let reader = Reader::from_source(Bytes::Embedded(DEFAULT_DB)).map_err(|source| {
            GeoError::Format {
                what: "the embedded database".into(),
                source,
            }
        })?;
        Ok(GeoDb {
            reader,
            fake_local: true,
        })
    }

    /// A database file, memory-mapped (city databases are large).
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let file = std::fs::File::open(path).map_err(|source| GeoError::Io {
            path: path.display().to_string(),
            source,
        })?;
        // SAFETY: the map is read-only; like any reader of a file, we assume nobody
        // truncates it underneath us (replace database files by renaming new ones in).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| GeoError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let reader =
            Reader::from_source(Bytes::Mapped(map)).map_err(|source| GeoError::Format {
                what: path.display().to_string(),
                source,
            })?;
        Ok(GeoDb {
            reader,
            fake_local: true,
        })
    }

    /// The embedded database, or `path` when given.
    pub fn load(path: Option<&Path>) -> Result<Self, GeoError> {
        match path {
            Some(p) => Self::open(p),
            None => Self::embedded(),
        }
    }

    /// Turns off random locations for local addresses (`--no-fake-local-ip`).
    pub fn with_fake_local(mut self, fake_local: bool) -> Self {
        self.fake_local = fake_local;
        self
    }

    /// The database's own description of itself (type and build date).
    pub fn describe(&self) -> String {
        format!(
            "{} (built {})",
            self.reader.metadata.database_type, self.reader.metadata.build_epoch
        )
    }

    /// Where the visitor at `ip` is. Local addresses get a random public location
    /// unless that was turned off; unknown addresses get [`Location::unknown`].
    pub fn locate(&self, ip: &ClientIp) -> Location {
        if ip.is_local() && self.fake_local {
            return self.random_location(&mut rand::rng());
        }
        self.lookup(ip.expose()).unwrap_or_else(Location::unknown)
    }

    /// The location the database has for `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        // A corrupt record is treated like a missing one; the address is not logged.
        let record: Record = self.reader.lookup(ip).ok().flatten()?;
        record.into_location()
    }

    /// A location drawn from a random public address that the database knows.
    pub fn random_location<R: Rng + ?Sized>(&self, rng: &mut R) -> Location {
        self.random_address(rng)
            .map(|(_, loc)| loc)
            .unwrap_or_else(Location::unknown)
    }

    /// A random public address inside the database's networks (IPv4 or IPv6, even
    /// odds) and its location: draws until one is known.
    pub fn random_address<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<(IpAddr, Location)> {
        let v6 = rng.random_bool(0.5);
        // Most of the IPv4 space is allocated; the global-unicast IPv6 block 2000::/3
        // is sparser, but a few hundred draws find a network. The bound only guards
        // against a database that covers almost nothing.
        for _ in 0..100_000 {
            let ip = if v6 {
                let bits = (rng.random::<u128>() >> 3) | (1u128 << 125); // 2000::/3
                IpAddr::V6(Ipv6Addr::from(bits))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
            };
            let reserved = match ip {
                IpAddr::V4(v4) => v4.is_multicast() || v4.octets()[0] >= 240,
                IpAddr::V6(_) => false,
            };
            if reserved || ClientIp::new(ip).is_local() {
                continue;
            }
            if let Some(loc) = self.lookup(ip) {
                return Some((ip, loc));
            }
        }
        None
    }
}

/// Either record shape; every field optional.
#[derive(Deserialize, Default)]
struct Record {
    // Flat (`@ip-location-db`).
    country_code: Option<String>,
    state1: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    // GeoIP2.
    country: Option<GeoIp2Country>,
    subdivisions: Option<Vec<GeoIp2Subdivision>>,
    location: Option<GeoIp2Location>,
    // A string in the flat shape, a record in GeoIP2.
    city: Option<CityField>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CityField {
    Name(String),
    Record {
        names: Option<HashMap<String, String>>,
    },
}

#[derive(Deserialize)]
struct GeoIp2Country {
    iso_code: Option<String>,
    names: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct GeoIp2Subdivision {
    iso_code: Option<String>,
    names: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct GeoIp2Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

fn english(names: Option<HashMap<String, String>>) -> Option<String> {
    names.and_then(|mut n| n.remove("en"))
}

impl Record {
    fn into_location(self) -> Option<Location> {
        let (code, db_name) = match (self.country, self.country_code) {
            (Some(c), _) if c.iso_code.is_some() => (c.iso_code, english(c.names)),
            (_, code) => (code, None),
        };
        let code = code?.to_ascii_uppercase();
        let country = country_info(&code);
        let country_name = db_name
            .or_else(|| country.map(|c| c.name.to_owned()))
            .unwrap_or_else(|| code.clone());

        let (subdivision_name, subdivision_code) = match self.subdivisions {
            Some(subs) if !subs.is_empty() => {
                let first = subs.into_iter().next().expect("checked non-empty");
                (
                    english(first.names).unwrap_or_default(),
                    first.iso_code.unwrap_or_default(),
                )
            }
            _ => (self.state1.unwrap_or_default(), String::new()),
        };
        let city_name = match self.city {
            Some(CityField::Name(n)) => n,
            Some(CityField::Record { names }) => english(names).unwrap_or_default(),
            None => String::new(),
        };
        let (lat, lon) = match self.location {
            Some(l) => (l.latitude, l.longitude),
            None => (self.latitude, self.longitude),
        };
        let (latitude, longitude) = match (lat, lon) {
            (Some(lat), Some(lon)) => (Some(lat), Some(lon)),
            _ => (country.map(|c| c.latitude), country.map(|c| c.longitude)),
        };
        Some(Location {
            country_code: code,
            country_name,
            subdivision_name,
            subdivision_code,
            city_name,
            latitude,
            longitude,
        })
    }
}

/// Name and centroid of a country.
#[derive(Debug, Clone, Copy)]
pub struct CountryInfo {
    /// Common English name ("United States", not "United States of America").
    pub name: &'static str,
    /// Centroid latitude.
    pub latitude: f64,
    /// Centroid longitude.
    pub longitude: f64,
}

/// The ISO 3166 entry for an alpha-2 code.
pub fn country_info(code: &str) -> Option<CountryInfo> {
    static TABLE: OnceLock<HashMap<String, CountryInfo>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            keshvar::SUPPORTED_ALPHA2_LIST
                .iter()
                .map(|a2| {
                    let c = a2.to_country();
                    let geo = c.geo();
                    // The first unofficial name is the everyday one where the ISO
                    // short name is formal ("Korea (Republic of)" -> "South Korea").
                    let name = c
                        .unofficial_name_list()
                        .first()
                        .copied()
                        .unwrap_or(c.iso_short_name());
                    let info = CountryInfo {
                        name,
                        latitude: geo.latitude(),
                        longitude: geo.longitude(),
                    };
                    (a2.to_string().to_ascii_uppercase(), info)
                })
                .collect()
        })
        .get(code)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn db() -> GeoDb {
        GeoDb::embedded().unwrap()
    }

    fn at(ip: &str) -> Location {
        db().locate(&ClientIp::new(ip.parse().unwrap()))
    }

    #[test]
    fn well_known_public_addresses_resolve_to_their_countries() {
        for (ip, code, name) in [
            ("8.8.8.8", "US", "United States"),
            ("81.2.69.142", "GB", "United Kingdom"),
            ("193.0.6.139", "NL", "Netherlands"),
            ("2001:67c:2e8:22::c100:68b", "NL", "Netherlands"),
        ] {
            let loc = at(ip);
            assert_eq!(loc.country_code, code, "{ip}");
            assert_eq!(loc.country_name, name, "{ip}");
        }
    }

    #[test]
    fn country_level_database_falls_back_to_the_country_centroid() {
        let loc = at("8.8.8.8");
        let (lat, lon) = (loc.latitude.unwrap(), loc.longitude.unwrap());
        assert!(
            (24.0..50.0).contains(&lat) && (-125.0..-66.0).contains(&lon),
            "{lat},{lon}"
        );
        assert_eq!(loc.city_name, "");
    }

    #[test]
    fn address_not_in_database_is_unknown() {
        let loc = db()
            .with_fake_local(false)
            .locate(&ClientIp::new("127.0.0.1".parse().unwrap()));
        assert_eq!(loc, Location::unknown());
        // Reserved space the registries never allocate.
        assert_eq!(db().lookup("240.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn local_address_gets_a_random_public_location_by_default() {
        let loc = at("192.168.1.20");
        assert_ne!(loc.country_code, "--");
        assert!(
            country_info(&loc.country_code).is_some(),
            "{}",
            loc.country_code
        );
    }

    #[test]
    fn random_locations_are_reproducible_with_a_seed() {
        let db = db();
        let a: Vec<_> = (0..5)
            .map(|_| 0)
            .scan(rand::rngs::StdRng::seed_from_u64(7), |r, _| {
                Some(db.random_location(r))
            })
            .collect();
        let b: Vec<_> = (0..5)
            .map(|_| 0)
            .scan(rand::rngs::StdRng::seed_from_u64(7), |r, _| {
                Some(db.random_location(r))
            })
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn random_addresses_cover_both_families_and_resolve() {
        let db = db();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (mut v4, mut v6) = (0, 0);
        for _ in 0..200 {
            let (ip, loc) = db.random_address(&mut rng).unwrap();
            assert_eq!(db.lookup(ip), Some(loc.clone()));
            assert!(!ClientIp::new(ip).is_local());
            if ip.is_ipv4() { v4 += 1 } else { v6 += 1 }
        }
        assert!(v4 > 50 && v6 > 50, "{v4} IPv4, {v6} IPv6");
    }

    #[test]
    fn geoip2_shaped_records_are_understood() {
        let rec: Record = serde_json::from_value(serde_json::json!({
            "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
            "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
            "city": {"names": {"en": "London", "de": "London"}},
            "location": {"latitude": 51.5142, "longitude": -0.0931}
        }))
        .unwrap();
        let loc = rec.into_location().unwrap();
        assert_eq!(loc.city_name, "London");
        assert_eq!(loc.subdivision_name, "England");
        assert_eq!(loc.subdivision_code, "ENG");
        assert_eq!(loc.latitude, Some(51.5142));
    }

    #[test]
    fn flat_city_records_are_understood() {
        let rec: Record = serde_json::from_value(serde_json::json!({
            "city": "Mountain View", "country_code": "US", "state1": "California",
            "latitude": 37.386, "longitude": -122.0838
        }))
        .unwrap();
        let loc = rec.into_location().unwrap();
        assert_eq!(
            (
                loc.city_name.as_str(),
                loc.subdivision_name.as_str(),
                loc.country_name.as_str()
            ),
            ("Mountain View", "California", "United States")
        );
        assert_eq!(loc.longitude, Some(-122.0838));
    }
}
