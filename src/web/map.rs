//! The world map on the stats page: presses by country, drawn on the server as one
//! inline SVG.
//!
//! The shapes are world-atlas's `countries-110m.json` (Natural Earth 1:110m, as
//! TopoJSON), embedded into the binary at build time (`BUTTON_WORLD_ATLAS`, set by
//! `build.rs`), projected with Equal Earth and turned into SVG path data once per
//! process; rendering a page is string concatenation. Guarantees:
//!
//! - **Nothing from another origin**: the SVG is inline and has no `href`, no
//!   `style` attribute and no script, so it lives under the page's strict CSP.
//!   Colours come from the page's stylesheet through the classes `l0`..`l5`.
//! - **Works without JavaScript**: the shading, every country's count (in its
//!   `<title>`, which browsers show as a tooltip) and the legend are in the HTML.
//!   Script only adds live dots into the empty `<g id="map-dots">`.
//! - **One `<path>` per country**, in dataset order, carrying `data-code` (ISO
//!   3166-1 alpha-2) and `data-count` when the country has a code. Only countries
//!   with presses are focusable, so a keyboard user does not tab through ~176 shapes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use geojson::Value as GeoJsonValue;
use geojson::feature::Id as FeatureId;
use serde_json::Value as JsonValue;
use topojson::{TopoJson, Value as TopoValue};

/// The TopoJSON object holding one geometry per country in world-atlas.
const COUNTRIES_OBJECT: &str = "countries";

/// ISO 3166-1 numeric code of Antarctica, which is left out: nobody presses from
/// there in practice, and it would be a wide band of never-shaded shape along the
/// bottom (4 KB, 6% of the path bytes). Its ring also goes round the pole, which
/// the antimeridian cut below does not handle. It saves little height: the viewBox
/// stays symmetric about the equator so that 0°, 0° is its centre, and Greenland
/// (83.6°N) reaches almost as far from the equator as Antarctica (85.6°S) does.
const ANTARCTICA: u16 = 10;

/// Width of the viewBox; the height follows from the projection and the data.
const WIDTH: f64 = 1000.0;

/// Room kept around the drawing so that country outlines on the edges (Fiji and
/// Chukotka at ±180°, Greenland at the top) are not half clipped by the viewBox.
const PADDING: f64 = 2.0;

// Equal Earth (Šavrič, Patterson & Jenny, 2018).
const A1: f64 = 1.340264;
const A2: f64 = -0.081106;
const A3: f64 = 0.000893;
const A4: f64 = 0.003796;
/// √3 / 2 (`f64::sqrt` is not a `const fn`).
const M: f64 = 0.866_025_403_784_438_6;

/// Why the world map could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The text is not TopoJSON the `topojson` crate can read.
    #[error("not valid TopoJSON: {0}")]
    TopoJson(#[from] topojson::Error),
    /// The document is a lone geometry rather than a topology.
    #[error("the TopoJSON document is a single geometry, not a topology")]
    NotATopology,
    /// The topology has no `countries` object (or it is not a collection).
    #[error("the topology has no geometry collection named {0:?}")]
    MissingCountries(&'static str),
    /// A country is something other than a polygon or multipolygon.
    #[error("geometry {index} ({name:?}) is a {kind}, not a polygon or multipolygon")]
    NotAPolygon {
        /// Position in the collection.
        index: usize,
        /// Its `properties.name`, if any.
        name: String,
        /// The geometry type found.
        kind: &'static str,
    },
    /// A country refers to an arc the topology does not have.
    #[error("geometry {index} ({name:?}) refers to arc {arc}, but there are only {arcs} arcs")]
    ArcOutOfRange {
        /// Position in the collection.
        index: usize,
        /// Its `properties.name`, if any.
        name: String,
        /// The arc index as written (negative means reversed).
        arc: i32,
        /// How many arcs the topology has.
        arcs: usize,
    },
    /// An arc has a position with fewer than two coordinates.
    #[error("arc {0} has a position with fewer than two coordinates")]
    ShortPosition(usize),
    /// Nothing is left to draw.
    #[error("the topology has no countries to draw")]
    NoCountries,
}

/// One country's shape, ready to be written into the SVG.
#[derive(Debug, Clone)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code, upper case ("FI"), or empty when the dataset gives
    /// no ISO code (N. Cyprus, Somaliland, Kosovo) or one keshvar does not know.
    /// A country with an empty code is drawn but never carries data.
    pub code: String,
    /// The dataset's `properties.name` ("Finland", "Dem. Rep. Congo"), not escaped.
    pub name: String,
    /// The `d` attribute: path data in viewBox units with at most one decimal.
    /// Only digits, `.`, `-`, spaces and the letters `MmLlz`, so it needs no escaping.
    pub path: String,
}

/// The projected world: every country's path and the size of the viewBox.
#[derive(Debug, Clone)]
pub struct WorldMap {
    countries: Vec<Country>,
    /// viewBox height in tenths of a unit, so that it prints exactly and the
    /// centre used by [`WorldMap::project`] is exactly half of what is printed.
    height_tenths: i64,
    /// viewBox units per Equal Earth unit.
    scale: f64,
    /// Sum of the path lengths, to size the rendering buffer once.
    path_bytes: usize,
}

impl WorldMap {
    /// Decodes a world-atlas style TopoJSON topology (an object `countries` of
    /// polygons and multipolygons, `id` the ISO 3166-1 numeric code as a string,
    /// `properties.name` the name) and projects it. Antarctica is left out.
    ///
    /// The viewBox is 1000 wide and symmetric about the equator (the point at 0°, 0°
    /// is its centre) with the height set by the country that reaches furthest from
    /// the equator.
    pub fn parse(topojson: &str) -> Result<WorldMap, MapError> {
        let mut topology = match topojson.parse::<TopoJson>()? {
            TopoJson::Topology(topology) => topology,
            TopoJson::Geometry(_) => return Err(MapError::NotATopology),
        };
        let arc_count = topology.arcs.len();
        // `to_geojson` indexes positions and arcs without checking and panics on a
        // nested collection, so anything it would trip over is refused here first.
        if let Some(arc) = topology
            .arcs
            .iter()
            .position(|arc| arc.iter().any(|p| p.len() < 2))
        {
            return Err(MapError::ShortPosition(arc));
        }
        let geometries = topology
            .objects
            .iter_mut()
            .find(|object| object.name == COUNTRIES_OBJECT)
            .and_then(|object| match &mut object.geometry.value {
                TopoValue::GeometryCollection(geometries) => Some(geometries),
                _ => None,
            })
            .ok_or(MapError::MissingCountries(COUNTRIES_OBJECT))?;
        for (index, geometry) in geometries.iter_mut().enumerate() {
            let name = || {
                geometry
                    .properties
                    .as_ref()
                    .and_then(|p| p.get("name"))
                    .and_then(JsonValue::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let rings: Vec<&Vec<i32>> = match &geometry.value {
                TopoValue::Polygon(rings) => rings.iter().collect(),
                TopoValue::MultiPolygon(polygons) => polygons.iter().flatten().collect(),
                other => {
                    return Err(MapError::NotAPolygon {
                        index,
                        name: name(),
                        kind: kind_of(other),
                    });
                }
            };
            // `!arc` is the spec's "~arc": the index of a reversed arc.
            if let Some(&arc) = rings
                .iter()
                .flat_map(|ring| ring.iter())
                .find(|&&arc| (if arc < 0 { !arc } else { arc }) as usize >= arc_count)
            {
                return Err(MapError::ArcOutOfRange {
                    index,
                    name: name(),
                    arc,
                    arcs: arc_count,
                });
            }
            // `to_geojson` logs a warning for every feature without a usable id (three
            // in world-atlas), which would be noise in the logs at every start. An
            // empty id means the same thing to us: no code.
            if !matches!(
                geometry.id,
                Some(JsonValue::String(_) | JsonValue::Number(_))
            ) {
                geometry.id = Some(JsonValue::String(String::new()));
            }
        }

        let features = topojson::to_geojson(&topology, COUNTRIES_OBJECT)?.features;
        let alpha2 = alpha2_by_numeric();
        let mut shapes = Vec::with_capacity(features.len());
        let mut reach: f64 = 0.0;
        for feature in features {
            let numeric = match &feature.id {
                Some(FeatureId::String(id)) => id.trim().parse::<u16>().ok(),
                Some(FeatureId::Number(id)) => id.as_u64().and_then(|n| u16::try_from(n).ok()),
                None => None,
            };
            if numeric == Some(ANTARCTICA) {
                continue;
            }
            let code = numeric
                .and_then(|n| alpha2.get(&n))
                .cloned()
                .unwrap_or_default();
            let name = feature
                .properties
                .as_ref()
                .and_then(|p| p.get("name"))
                .and_then(JsonValue::as_str)
                .map(str::to_owned)
                // Never happens in world-atlas; the code still says which one it is.
                .unwrap_or_else(|| code.clone());
            let rings: Vec<&Vec<Vec<f64>>> = match feature.geometry.as_ref().map(|g| &g.value) {
                Some(GeoJsonValue::Polygon(rings)) => rings.iter().collect(),
                Some(GeoJsonValue::MultiPolygon(polygons)) => polygons.iter().flatten().collect(),
                // Checked above: every geometry is a polygon or a multipolygon.
                _ => Vec::new(),
            };
            let projected: Vec<Vec<(f64, f64)>> = rings
                .iter()
                .flat_map(|ring| split_at_antimeridian(ring.iter().map(|p| (p[0], p[1])).collect()))
                .map(|ring| {
                    ring.into_iter()
                        .map(|(lon, lat)| equal_earth(lat, lon))
                        .collect()
                })
                .collect();
            reach = projected
                .iter()
                .flatten()
                .fold(reach, |r, &(_, y)| r.max(y.abs()));
            shapes.push((code, name, projected));
        }
        if shapes.is_empty() {
            return Err(MapError::NoCountries);
        }

        let scale = (WIDTH - 2.0 * PADDING) / (2.0 * equal_earth(0.0, 180.0).0);
        let height_tenths = ((2.0 * (PADDING + scale * reach)) * 10.0).ceil() as i64;
        let centre_y = height_tenths as f64 / 20.0;
        let countries: Vec<Country> = shapes
            .into_iter()
            .map(|(code, name, projected)| {
                let rings: Vec<Vec<(i64, i64)>> = projected
                    .iter()
                    .map(|ring| {
                        ring.iter()
                            .map(|&(x, y)| {
                                let tenths = |v: f64| (v * 10.0).round() as i64;
                                (
                                    tenths(WIDTH / 2.0 + scale * x),
                                    tenths(centre_y - scale * y),
                                )
                            })
                            .collect()
                    })
                    .collect();
                Country {
                    code,
                    name,
                    path: path_data(&rings),
                }
            })
            .collect();
        let path_bytes = countries.iter().map(|c| c.path.len()).sum();
        Ok(WorldMap {
            countries,
            height_tenths,
            scale,
            path_bytes,
        })
    }

    /// The map embedded into the binary, decoded on first use and kept for the life
    /// of the process.
    ///
    /// # Panics
    ///
    /// If the embedded file does not decode: it is fixed at build time and the
    /// tests decode it, so that is a broken build, not a runtime condition.
    pub fn embedded() -> &'static WorldMap {
        static MAP: OnceLock<WorldMap> = OnceLock::new();
        MAP.get_or_init(|| {
            WorldMap::parse(include_str!(env!("BUTTON_WORLD_ATLAS"))).expect(
                "the world-atlas countries-110m.json embedded at build time (BUTTON_WORLD_ATLAS) \
                 must decode; did the world-atlas package change shape?",
            )
        })
    }

    /// Every country drawn, in dataset order (Antarctica left out).
    pub fn countries(&self) -> &[Country] {
        &self.countries
    }

    /// Width of the viewBox (always 1000).
    #[cfg(test)]
    pub fn width(&self) -> f64 {
        WIDTH
    }

    /// Height of the viewBox.
    pub fn height(&self) -> f64 {
        self.height_tenths as f64 / 10.0
    }

    /// Where a place falls in viewBox coordinates (x to the right, y downwards), for
    /// drawing on top of the map. 0°, 0° is the centre of the viewBox. Latitude is
    /// clamped to ±90°; a longitude outside ±180° is wrapped. Non-finite input gives
    /// non-finite output.
    pub fn project(&self, latitude: f64, longitude: f64) -> (f64, f64) {
        let longitude = if (-180.0..=180.0).contains(&longitude) {
            longitude
        } else {
            (longitude + 180.0).rem_euclid(360.0) - 180.0
        };
        let (x, y) = equal_earth(latitude.clamp(-90.0, 90.0), longitude);
        (
            WIDTH / 2.0 + self.scale * x,
            self.height() / 2.0 - self.scale * y,
        )
    }

    /// The whole `<svg>` element: one `<path>` per country, shaded by `shading`,
    /// then an empty `<g id="map-dots">` for live dots. Codes in `shading` that the
    /// map does not have (such as `--`, or small countries missing at this scale
    /// like Singapore) are not drawn.
    pub fn render(&self, shading: &Shading) -> String {
        let mut svg = String::with_capacity(self.path_bytes + 170 * self.countries.len() + 400);
        svg.push_str(r#"<svg id="world-map" class="world-map" viewBox="0 0 "#);
        push_decimal(&mut svg, WIDTH as i64 * 10);
        svg.push(' ');
        push_decimal(&mut svg, self.height_tenths);
        svg.push_str(
            r#"" role="group" aria-labelledby="world-map-title"><title id="world-map-title">Presses by country</title>"#,
        );
        for country in &self.countries {
            svg.push_str("\n<path d=\"");
            svg.push_str(&country.path);
            if country.code.is_empty() {
                svg.push_str(r#"" class="country"><title>"#);
                push_escaped(&mut svg, &country.name);
            } else {
                let count = shading.count(&country.code);
                let _ = write!(
                    svg,
                    r#"" class="country l{}" data-code=""#,
                    shading.level(&country.code)
                );
                push_escaped(&mut svg, &country.code);
                let _ = write!(svg, r#"" data-count="{count}""#);
                if count > 0 {
                    svg.push_str(r#" tabindex="0""#);
                }
                svg.push_str("><title>");
                push_escaped(&mut svg, &country.name);
                let _ = match count {
                    0 => write!(svg, ": no presses"),
                    1 => write!(svg, ": 1 press"),
                    n => write!(svg, ": {n} presses"),
                };
            }
            svg.push_str("</title></path>");
        }
        svg.push_str("\n<g id=\"map-dots\"></g></svg>");
        svg
    }
}

/// Presses per country to draw, and the top of the scale.
#[derive(Debug, Clone, Default)]
pub struct Shading {
    counts: HashMap<String, u64>,
    max: u64,
}

impl Shading {
    /// Presses by ISO 3166-1 alpha-2 code. Codes are matched case-insensitively and
    /// repeated codes add up. Anything that is not two ASCII letters (such as `--`,
    /// the unknown country) is dropped, so it can neither be drawn nor set the top
    /// of the scale. Codes the map does not have still count towards the top of the
    /// scale: they are real countries, just too small to draw at this scale.
    pub fn new(counts: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut by_code: HashMap<String, u64> = HashMap::new();
        for (code, count) in counts {
            if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
                let total = by_code.entry(code.to_ascii_uppercase()).or_insert(0);
                *total = total.saturating_add(count);
            }
        }
        let max = by_code.values().copied().max().unwrap_or(0);
        Shading {
            counts: by_code,
            max,
        }
    }

    /// Presses for an alpha-2 code, in either case; 0 if none.
    pub fn count(&self, code: &str) -> u64 {
        // The map's codes are upper case already; only other callers pay for a copy.
        let found = if code.bytes().any(|b| b.is_ascii_lowercase()) {
            self.counts.get(&code.to_ascii_uppercase())
        } else {
            self.counts.get(code)
        };
        found.copied().unwrap_or(0)
    }

    /// The largest count: the top of the scale. 0 when nothing was pressed.
    #[cfg(test)]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The shade of a country, 0 (no presses) to 5; see [`level`].
    pub fn level(&self, code: &str) -> u8 {
        level(self.count(code), self.max)
    }

    /// The levels the scale can produce, each with the smallest count that gets it,
    /// lowest first. Empty when nothing was pressed. Levels that no whole count
    /// reaches (with a small maximum the log scale skips some) are left out.
    pub fn legend(&self) -> Vec<(u8, u64)> {
        let mut legend = Vec::new();
        if self.max == 0 {
            return legend;
        }
        for wanted in 1..=5 {
            // The smallest count with at least this level: `level` is monotonic in
            // the count and level(max, max) is 5, so there always is one.
            let (mut low, mut high) = (1, self.max);
            while low < high {
                let middle = low + (high - low) / 2;
                if level(middle, self.max) >= wanted {
                    high = middle;
                } else {
                    low = middle + 1;
                }
            }
            if level(low, self.max) == wanted {
                legend.push((wanted, low));
            }
        }
        legend
    }
}

/// The shade for `count` presses when the busiest country has `max`: 0 for no
/// presses, otherwise 1 to 5 on a log scale, splitting 1..=`max` into five equal
/// steps of log(count) / log(max). `max` itself (or more) is 5, and a single press
/// is 1 unless it is the maximum.
pub fn level(count: u64, max: u64) -> u8 {
    if count == 0 {
        return 0;
    }
    if count >= max {
        return 5;
    }
    // Here 1 <= count < max, so max >= 2 and its logarithm is positive.
    let fraction = (count as f64).ln() / (max as f64).ln();
    1 + ((fraction * 5.0).floor() as u8).min(4)
}

/// The legend as HTML: `<ol class="map-legend">` with one item per level the
/// scale produces (see [`Shading::legend`]), or a single "No presses yet".
pub fn legend_html(shading: &Shading) -> String {
    let legend = shading.legend();
    let mut html = String::from(r#"<ol class="map-legend">"#);
    if legend.is_empty() {
        html.push_str("<li>No presses yet</li>");
    }
    for (level, from) in legend {
        // Only integers are written, so there is nothing to escape.
        let _ = write!(
            html,
            r#"<li><span class="swatch l{level}"></span> {from}+</li>"#
        );
    }
    html.push_str("</ol>");
    html
}

/// Equal Earth, in its own units (x within ±2.71, y within ±1.32, y up).
fn equal_earth(latitude: f64, longitude: f64) -> (f64, f64) {
    let (lambda, phi) = (longitude.to_radians(), latitude.to_radians());
    let theta = (M * phi.sin()).asin();
    let t2 = theta * theta;
    let t6 = t2 * t2 * t2;
    let x = lambda * theta.cos() / (M * (A1 + 3.0 * A2 * t2 + t6 * (7.0 * A3 + 9.0 * A4 * t2)));
    let y = theta * (A1 + A2 * t2 + t6 * (A3 + A4 * t2));
    (x, y)
}

/// A ring as (longitude, latitude) pieces that each stay on one side of the
/// antimeridian.
///
/// world-atlas does not cut its rings at ±180° (d3 clips on the sphere when it
/// draws), so Fiji, Chukotka and Wrangel Island have edges from 179.x° straight to
/// -180°; drawn as they are on a map whose edges are ±180°, each would be a stripe
/// across the whole map. Such a ring is unwrapped into continuous longitudes,
/// clipped to every 360° window it reaches, and each piece is shifted back; the
/// cut is closed along the edge of the map.
fn split_at_antimeridian(ring: Vec<(f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    if !ring
        .windows(2)
        .any(|pair| (pair[1].0 - pair[0].0).abs() > 180.0)
    {
        return vec![ring];
    }
    let mut unwrapped = Vec::with_capacity(ring.len());
    let mut offset = 0.0;
    let mut previous = ring[0].0;
    for &(longitude, latitude) in &ring {
        if longitude - previous > 180.0 {
            offset -= 360.0;
        } else if longitude - previous < -180.0 {
            offset += 360.0;
        }
        previous = longitude;
        unwrapped.push((longitude + offset, latitude));
    }
    // A ring around a pole (only Antarctica's, which is not drawn) ends a full turn
    // from where it started; cutting it would need the pole added. Left as it is.
    if let (Some(first), Some(last)) = (unwrapped.first(), unwrapped.last())
        && (last.0 - first.0).abs() > 180.0
    {
        return vec![ring];
    }
    let west = unwrapped.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let east = unwrapped
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max);
    // Window k covers longitudes -180 + 360k ..= 180 + 360k.
    let windows = ((west - 180.0) / 360.0).ceil() as i32..=((east + 180.0) / 360.0).floor() as i32;
    let mut pieces = Vec::new();
    for window in windows {
        let shift = 360.0 * f64::from(window);
        let piece = clip_to_meridian(
            &clip_to_meridian(&unwrapped, shift - 180.0, true),
            shift + 180.0,
            false,
        );
        // A ring that only touches the edge leaves a sliver along it, not a piece.
        if piece.len() >= 3 && piece.iter().any(|p| (p.0 - shift).abs() < 180.0) {
            pieces.push(
                piece
                    .into_iter()
                    .map(|(longitude, latitude)| (longitude - shift, latitude))
                    .collect(),
            );
        }
    }
    pieces
}

/// The part of a closed ring east (or west) of the meridian `edge`: one
/// Sutherland–Hodgman step. Where the ring crosses the meridian more than twice the
/// result has zero-width bridges along the meridian, which fill nothing and lie on
/// the edge of the map.
fn clip_to_meridian(ring: &[(f64, f64)], edge: f64, keep_east: bool) -> Vec<(f64, f64)> {
    let inside = |p: (f64, f64)| if keep_east { p.0 >= edge } else { p.0 <= edge };
    // Only called with one end inside and the other strictly outside, so a.0 != b.0.
    let crossing =
        |a: (f64, f64), b: (f64, f64)| (edge, a.1 + (edge - a.0) / (b.0 - a.0) * (b.1 - a.1));
    let mut kept = Vec::with_capacity(ring.len() + 4);
    for (i, &current) in ring.iter().enumerate() {
        let previous = ring[(i + ring.len() - 1) % ring.len()];
        match (inside(previous), inside(current)) {
            (true, true) => kept.push(current),
            (true, false) => kept.push(crossing(previous, current)),
            (false, true) => {
                kept.push(crossing(previous, current));
                kept.push(current);
            }
            (false, false) => {}
        }
    }
    kept
}

/// ISO 3166-1 numeric code to alpha-2, for every country keshvar is built with.
/// keshvar's own numeric search needs its `search-iso-number` feature, which the
/// project does not enable; walking the list once per parse is cheap enough.
fn alpha2_by_numeric() -> HashMap<u16, String> {
    keshvar::SUPPORTED_ALPHA2_LIST
        .iter()
        .filter_map(|alpha2| {
            let numeric = alpha2.to_country().number().parse::<u16>().ok()?;
            Some((numeric, alpha2.to_string()))
        })
        .collect()
}

/// The TopoJSON type name, for error messages.
fn kind_of(value: &TopoValue) -> &'static str {
    match value {
        TopoValue::Point(_) => "Point",
        TopoValue::MultiPoint(_) => "MultiPoint",
        TopoValue::LineString(_) => "LineString",
        TopoValue::MultiLineString(_) => "MultiLineString",
        TopoValue::Polygon(_) => "Polygon",
        TopoValue::MultiPolygon(_) => "MultiPolygon",
        TopoValue::GeometryCollection(_) => "GeometryCollection",
    }
}

/// SVG path data for closed rings given in tenths of a viewBox unit.
///
/// Points that round onto the previous one are dropped, as is the closing point
/// (`z` closes), and rings left with fewer than three points (specks at this
/// scale) are skipped. Each point is written absolute or relative, whichever makes
/// the whole ring shortest (a switch costs a command letter, the choice changes
/// which separators are needed), found by a two-state dynamic programme.
fn path_data(rings: &[Vec<(i64, i64)>]) -> String {
    let mut out = PathWriter::default();
    // Where the pen is after `z`: the start of the previous ring.
    let mut pen: Option<(i64, i64)> = None;
    for ring in rings {
        let mut points: Vec<(i64, i64)> = Vec::with_capacity(ring.len());
        for &point in ring {
            if points.last() != Some(&point) {
                points.push(point);
            }
        }
        while points.len() > 1 && points.last() == points.first() {
            points.pop();
        }
        if points.len() < 3 {
            continue;
        }

        // coordinates(i, relative): what point i writes in either mode.
        let coordinates = |i: usize, relative: bool| -> (i64, i64) {
            let (x, y) = points[i];
            let origin = if i == 0 { pen } else { Some(points[i - 1]) };
            match (relative, origin) {
                (true, Some((ox, oy))) => (x - ox, y - oy),
                _ => (x, y),
            }
        };
        const ABSOLUTE: usize = 0;
        const RELATIVE: usize = 1;
        // The first `m` of a path is absolute anyway, so only offer it after a ring.
        let first_modes: &[usize] = if pen.is_some() {
            &[ABSOLUTE, RELATIVE]
        } else {
            &[ABSOLUTE]
        };
        let mut cost = [usize::MAX; 2];
        for &mode in first_modes {
            let (x, y) = coordinates(0, mode == RELATIVE);
            cost[mode] = 1 + number_len(x) + usize::from(needs_space(x, y)) + number_len(y);
        }
        // came_from[i][mode]: the mode of point i - 1 on the cheapest way to write
        // point i in `mode`.
        let mut came_from = vec![[ABSOLUTE; 2]; points.len()];
        for (i, from) in came_from.iter_mut().enumerate().skip(1) {
            let mut next = [usize::MAX; 2];
            for mode in [ABSOLUTE, RELATIVE] {
                let (x, y) = coordinates(i, mode == RELATIVE);
                let body = number_len(x) + usize::from(needs_space(x, y)) + number_len(y);
                for previous in [ABSOLUTE, RELATIVE] {
                    if cost[previous] == usize::MAX {
                        continue;
                    }
                    let joint = if previous == mode {
                        usize::from(needs_space(coordinates(i - 1, previous == RELATIVE).1, x))
                    } else {
                        1 // the command letter, which also separates
                    };
                    let total = cost[previous] + joint + body;
                    if total < next[mode] {
                        next[mode] = total;
                        from[mode] = previous;
                    }
                }
            }
            cost = next;
        }
        let mut modes = vec![ABSOLUTE; points.len()];
        let last = points.len() - 1;
        modes[last] = if cost[RELATIVE] < cost[ABSOLUTE] {
            RELATIVE
        } else {
            ABSOLUTE
        };
        for i in (1..=last).rev() {
            modes[i - 1] = came_from[i][modes[i]];
        }

        for (i, &mode) in modes.iter().enumerate() {
            let relative = mode == RELATIVE;
            if i == 0 {
                out.command(if relative { 'm' } else { 'M' });
            } else if mode != modes[i - 1] {
                out.command(if relative { 'l' } else { 'L' });
            }
            let (x, y) = coordinates(i, relative);
            out.number(x);
            out.number(y);
        }
        out.command('z');
        pen = Some(points[0]);
    }
    out.text
}

/// Writes path data with no more separators than the SVG grammar needs.
#[derive(Default)]
struct PathWriter {
    text: String,
    /// The number written last, if the last token was a number.
    last_number: Option<i64>,
}

impl PathWriter {
    fn command(&mut self, letter: char) {
        self.text.push(letter);
        self.last_number = None;
    }

    fn number(&mut self, tenths: i64) {
        if let Some(previous) = self.last_number
            && needs_space(previous, tenths)
        {
            self.text.push(' ');
        }
        push_decimal(&mut self.text, tenths);
        self.last_number = Some(tenths);
    }
}

/// Whether a space must separate two numbers written one after the other: not
/// before a minus sign, nor before a bare fraction (".5") after a number that
/// already has a decimal point, since a number cannot hold two points.
fn needs_space(previous: i64, next: i64) -> bool {
    let bare_fraction = (1..10).contains(&next);
    !(next < 0 || (bare_fraction && previous % 10 != 0))
}

/// Length of [`push_decimal`]'s output.
fn number_len(tenths: i64) -> usize {
    let sign = usize::from(tenths < 0);
    let (whole, fraction) = (tenths.unsigned_abs() / 10, tenths.unsigned_abs() % 10);
    let whole_digits = if whole == 0 {
        usize::from(fraction == 0)
    } else {
        whole.ilog10() as usize + 1
    };
    sign + whole_digits + if fraction == 0 { 0 } else { 2 }
}

/// Writes tenths as the shortest decimal: `12`, `1.5`, `.5`, `-.5`.
fn push_decimal(out: &mut String, tenths: i64) {
    if tenths < 0 {
        out.push('-');
    }
    let (whole, fraction) = (tenths.unsigned_abs() / 10, tenths.unsigned_abs() % 10);
    if whole != 0 || fraction == 0 {
        let _ = write!(out, "{whole}");
    }
    if fraction != 0 {
        let _ = write!(out, ".{fraction}");
    }
}

/// Appends `text` escaped for HTML text and double- or single-quoted attributes.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atlas() -> &'static str {
        include_str!(env!("BUTTON_WORLD_ATLAS"))
    }

    /// The dataset's geometries as (id, name), read with serde_json alone.
    fn dataset() -> Vec<(Option<String>, String)> {
        let json: JsonValue = serde_json::from_str(atlas()).unwrap();
        json["objects"]["countries"]["geometries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().map(str::to_owned),
                    g["properties"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The `<path ...>` start tags of a rendering.
    fn path_tags(svg: &str) -> Vec<&str> {
        svg.match_indices("<path ")
            .map(|(at, _)| &svg[at..at + svg[at..].find('>').unwrap()])
            .collect()
    }

    fn tag_for<'a>(svg: &'a str, code: &str) -> &'a str {
        let needle = format!("data-code=\"{code}\"");
        path_tags(svg)
            .into_iter()
            .find(|t| t.contains(&needle))
            .unwrap()
    }

    /// Reads path data back into absolute rings in tenths, following the SVG grammar
    /// independently of the writer.
    fn decode_path(d: &str) -> Vec<Vec<(i64, i64)>> {
        let bytes = d.as_bytes();
        let mut numbers_and_commands: Vec<Result<f64, char>> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i] as char;
            if c.is_ascii_alphabetic() {
                numbers_and_commands.push(Err(c));
                i += 1;
            } else if c == ' ' || c == ',' {
                i += 1;
            } else {
                let start = i;
                if bytes[i] == b'-' {
                    i += 1;
                }
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if i < bytes.len() && bytes[i] == b'.' {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                assert!(i > start, "unexpected {c:?} in {d}");
                numbers_and_commands.push(Ok(d[start..i].parse().unwrap()));
            }
        }
        let mut rings = Vec::new();
        let mut ring: Vec<(i64, i64)> = Vec::new();
        let (mut pen, mut start) = ((0.0, 0.0), (0.0, 0.0));
        let mut command = ' ';
        let mut tokens = numbers_and_commands.into_iter().peekable();
        while let Some(token) = tokens.next() {
            let x = match token {
                Err('z' | 'Z') => {
                    rings.push(std::mem::take(&mut ring));
                    pen = start;
                    continue;
                }
                Err(letter) => {
                    command = letter;
                    continue;
                }
                Ok(x) => x,
            };
            let y = tokens.next().unwrap().unwrap();
            // A leading `m` counts from (0, 0), which is where the pen starts anyway.
            let relative = command.is_ascii_lowercase();
            pen = if relative {
                (pen.0 + x, pen.1 + y)
            } else {
                (x, y)
            };
            if command.eq_ignore_ascii_case(&'m') {
                start = pen;
                command = if command == 'm' { 'l' } else { 'L' };
            }
            ring.push(((pen.0 * 10.0).round() as i64, (pen.1 * 10.0).round() as i64));
        }
        assert!(ring.is_empty(), "an unclosed ring in {d}");
        rings
    }

    #[test]
    fn the_embedded_map_has_one_country_path_per_geometry_but_antarctica() {
        let expected = dataset()
            .iter()
            .filter(|(id, _)| id.as_deref() != Some("010"))
            .count();
        assert_eq!(
            dataset().len(),
            177,
            "world-atlas changed; check this module still fits"
        );
        let map = WorldMap::embedded();
        assert_eq!(map.countries().len(), expected);
        let svg = map.render(&Shading::default());
        let tags = path_tags(&svg);
        assert_eq!(tags.len(), expected);
        assert!(tags.iter().all(|t| t.contains(r#"class="country"#)));
        for tag in tags {
            let d = tag
                .strip_prefix("<path d=\"")
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(!d.is_empty(), "{tag}");
        }
        assert!(!svg.contains("Antarctica"));
    }

    #[test]
    fn countries_keep_the_dataset_order_and_names() {
        let names: Vec<String> = dataset()
            .into_iter()
            .filter(|(id, _)| id.as_deref() != Some("010"))
            .map(|(_, name)| name)
            .collect();
        let drawn: Vec<&str> = WorldMap::embedded()
            .countries()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(drawn, names);
    }

    #[test]
    fn known_countries_have_their_alpha2_codes() {
        let map = WorldMap::embedded();
        for code in ["FI", "US", "GB", "NL", "BR", "JP", "AU"] {
            assert_eq!(
                map.countries().iter().filter(|c| c.code == code).count(),
                1,
                "{code}"
            );
        }
        let fiji = map.countries().iter().find(|c| c.name == "Fiji").unwrap();
        assert_eq!(fiji.code, "FJ");
    }

    #[test]
    fn only_the_countries_without_an_iso_id_lack_a_code() {
        let mut uncoded: Vec<&str> = WorldMap::embedded()
            .countries()
            .iter()
            .filter(|c| c.code.is_empty())
            .map(|c| c.name.as_str())
            .collect();
        uncoded.sort_unstable();
        assert_eq!(uncoded, ["Kosovo", "N. Cyprus", "Somaliland"]);
    }

    #[test]
    fn unknown_and_absent_codes_in_the_shading_are_not_drawn() {
        let shading = Shading::new([
            ("--".to_owned(), 1000),
            ("ZZ".to_owned(), 500),
            ("FI".to_owned(), 3),
        ]);
        let svg = WorldMap::embedded().render(&shading);
        assert!(!svg.contains(r#"data-code="--""#));
        assert!(!svg.contains(r#"data-code="ZZ""#));
        assert!(!svg.contains(r#"data-count="1000""#));
        // "--" is dropped, so Finland is the top of the scale; ZZ is not on the map
        // but still a code, so it sets the scale.
        assert_eq!(shading.max(), 500);
        assert!(tag_for(&svg, "FI").contains(r#"data-count="3""#));
    }

    #[test]
    fn codes_are_matched_case_insensitively_and_repeats_add_up() {
        let shading = Shading::new([("fi".to_owned(), 2), ("FI".to_owned(), 3)]);
        assert_eq!(shading.count("FI"), 5);
        assert_eq!(shading.count("fi"), 5);
        assert_eq!(shading.level("Fi"), 5);
    }

    #[test]
    fn a_country_with_more_presses_never_has_a_lower_level() {
        for max in [1, 2, 3, 10, 57, 1000, 123_456, u64::MAX] {
            let mut previous = 0;
            let mut samples: Vec<u64> = if max <= 2000 {
                (0..=max).collect()
            } else {
                (0..64)
                    .map(|shift| 1 << shift)
                    .filter(|&c| c <= max)
                    .chain([0, max - 1, max])
                    .collect()
            };
            samples.sort_unstable();
            for count in samples {
                let now = level(count, max);
                assert!(
                    now >= previous,
                    "level({count}, {max}) = {now} < {previous}"
                );
                assert!(now <= 5);
                previous = now;
            }
        }
        let shading = Shading::new([
            ("FI".to_owned(), 12),
            ("SE".to_owned(), 40),
            ("NO".to_owned(), 3),
        ]);
        assert!(shading.level("NO") <= shading.level("FI"));
        assert!(shading.level("FI") <= shading.level("SE"));
    }

    #[test]
    fn level_ends_of_the_scale() {
        assert_eq!(level(0, 0), 0);
        assert_eq!(level(0, 7), 0);
        assert_eq!(level(7, 7), 5);
        assert_eq!(level(1, 1), 5);
        assert_eq!(level(1, 1_000_000), 1);
        assert_eq!(level(1_000_000, 1_000_000), 5);
        assert_eq!(level(999_999, 1_000_000), 5);
        assert_eq!(level(8, 3), 5, "more than the maximum is still the top");
    }

    #[test]
    fn the_legend_gives_each_reachable_level_its_smallest_count() {
        assert!(Shading::default().legend().is_empty());
        assert_eq!(Shading::new([("FI".to_owned(), 1)]).legend(), [(5, 1)]);
        assert_eq!(
            Shading::new([("FI".to_owned(), 2)]).legend(),
            [(1, 1), (5, 2)]
        );
        let shading = Shading::new([("FI".to_owned(), 100_000)]);
        let legend = shading.legend();
        assert_eq!(
            legend.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(legend[0], (1, 1));
        for (lvl, from) in legend {
            assert_eq!(level(from, 100_000), lvl);
            assert!(from == 1 || level(from - 1, 100_000) < lvl);
        }
    }

    #[test]
    fn the_legend_html_lists_levels_or_says_nothing_was_pressed() {
        assert_eq!(
            legend_html(&Shading::default()),
            r#"<ol class="map-legend"><li>No presses yet</li></ol>"#
        );
        assert_eq!(
            legend_html(&Shading::new([("FI".to_owned(), 2)])),
            r#"<ol class="map-legend"><li><span class="swatch l1"></span> 1+</li><li><span class="swatch l5"></span> 2+</li></ol>"#
        );
    }

    #[test]
    fn a_country_with_presses_is_marked_and_focusable() {
        let shading = Shading::new([
            ("FI".to_owned(), 12),
            ("US".to_owned(), 1),
            ("SE".to_owned(), 1000),
        ]);
        let svg = WorldMap::embedded().render(&shading);
        assert!(svg.contains(
            r#"class="country l2" data-code="FI" data-count="12" tabindex="0"><title>Finland: 12 presses</title></path>"#
        ));
        assert!(svg.contains(r#"data-code="US" data-count="1" tabindex="0"><title>United States of America: 1 press</title>"#));
        assert!(tag_for(&svg, "SE").contains(r#"class="country l5""#));
        let norway = tag_for(&svg, "NO");
        assert!(norway.contains(r#"class="country l0" data-code="NO" data-count="0""#));
        assert!(!norway.contains("tabindex"));
        assert!(svg.contains("<title>Norway: no presses</title>"));
        assert!(svg.contains(r#"class="country"><title>Kosovo</title></path>"#));
        assert_eq!(svg.matches("tabindex").count(), 3);
    }

    #[test]
    fn names_are_escaped() {
        let svg = WorldMap::embedded().render(&Shading::default());
        assert!(svg.contains("<title>Côte d&#39;Ivoire: no presses</title>"));
        let mut escaped = String::new();
        push_escaped(&mut escaped, r#"<a href="x">&'"#);
        assert_eq!(escaped, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn the_svg_has_the_hooks_and_nothing_from_outside() {
        let shading = Shading::new([("FI".to_owned(), 12)]);
        let map = WorldMap::embedded();
        let svg = map.render(&shading);
        let head = format!(
            r#"<svg id="world-map" class="world-map" viewBox="0 0 1000 {}" role="group" aria-labelledby="world-map-title"><title id="world-map-title">Presses by country</title>"#,
            map.height()
        );
        assert!(svg.starts_with(&head), "{}", &svg[..300]);
        assert!(svg.ends_with("<g id=\"map-dots\"></g></svg>"));
        assert_eq!(svg.matches("<path").count(), svg.matches("</path>").count());
        assert_eq!(
            svg.matches("<title").count(),
            svg.matches("</title>").count()
        );
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(!svg.contains("style"));
        assert!(!svg.contains("script"));
        assert!(!svg.contains("href"));
        // Inline in HTML: the parser puts it in the SVG namespace; no URL at all.
        assert!(!svg.contains("http"));
    }

    #[test]
    fn paths_hold_only_path_characters_and_stay_inside_the_view_box() {
        let map = WorldMap::embedded();
        let (width, height) = ((map.width() * 10.0) as i64, (map.height() * 10.0) as i64);
        for country in map.countries() {
            assert!(
                country
                    .path
                    .bytes()
                    .all(|b| b"0123456789.- MmLlz".contains(&b)),
                "{}",
                country.name
            );
            for (x, y) in decode_path(&country.path).into_iter().flatten() {
                assert!(
                    (0..=width).contains(&x) && (0..=height).contains(&y),
                    "{}: {x},{y}",
                    country.name
                );
            }
        }
    }

    #[test]
    fn no_edge_runs_across_the_map() {
        // Rings crossing the antimeridian (Fiji, Chukotka, Wrangel Island) are cut
        // at it; uncut, they would draw stripes from one side of the map to the other.
        let map = WorldMap::embedded();
        for country in map.countries() {
            for ring in decode_path(&country.path) {
                for (i, a) in ring.iter().enumerate() {
                    let b = ring[(i + 1) % ring.len()];
                    assert!((a.0 - b.0).abs() < 1000, "{}: {a:?} to {b:?}", country.name);
                }
            }
        }
        let russia = map.countries().iter().find(|c| c.code == "RU").unwrap();
        let xs: Vec<i64> = decode_path(&russia.path)
            .into_iter()
            .flatten()
            .map(|p| p.0)
            .collect();
        // Russia lies east of 19°E, except the tip of Chukotka beyond 180°.
        assert!(
            xs.iter().any(|&x| x < 3000),
            "Chukotka is drawn on the western edge"
        );
        assert!(xs.iter().all(|&x| !(3000..=5000).contains(&x)));
    }

    #[test]
    fn a_ring_across_the_antimeridian_is_cut_into_one_piece_per_side() {
        let ring = vec![
            (170.0, 10.0),
            (-170.0, 10.0),
            (-170.0, 20.0),
            (170.0, 20.0),
            (170.0, 10.0),
        ];
        let pieces = split_at_antimeridian(ring);
        assert_eq!(pieces.len(), 2);
        for piece in &pieces {
            let east = piece.iter().all(|p| p.0 >= 170.0 && p.0 <= 180.0);
            let west = piece.iter().all(|p| p.0 >= -180.0 && p.0 <= -170.0);
            assert!(east || west, "{piece:?}");
            assert!(piece.iter().any(|p| p.0.abs() == 180.0));
        }
        let plain = vec![(10.0, 10.0), (20.0, 10.0), (20.0, 20.0), (10.0, 10.0)];
        assert_eq!(split_at_antimeridian(plain.clone()), [plain]);
    }

    #[test]
    fn compact_paths_read_back_to_the_rounded_points() {
        let rings = vec![
            vec![(0, 0), (5, 0), (5, 0), (15, -7), (-3, 12), (0, 0)],
            vec![(1000, 2000), (1003, 2000), (1003, 2005), (1000, 2005)],
            vec![(7, 7), (7, 7), (8, 8)],
            vec![(-15, -5), (-5, -15), (5, 5), (9999, 1), (9998, 2)],
        ];
        let d = path_data(&rings);
        let expected = vec![
            vec![(0, 0), (5, 0), (15, -7), (-3, 12)],
            vec![(1000, 2000), (1003, 2000), (1003, 2005), (1000, 2005)],
            vec![(-15, -5), (-5, -15), (5, 5), (9999, 1), (9998, 2)],
        ];
        assert_eq!(decode_path(&d), expected, "{d}");
        assert!(path_data(&[vec![(1, 1), (1, 1)]]).is_empty());
    }

    #[test]
    fn the_embedded_paths_read_back_to_closed_rings_of_at_least_three_points() {
        for country in WorldMap::embedded().countries() {
            let rings = decode_path(&country.path);
            assert!(!rings.is_empty(), "{}", country.name);
            assert!(rings.iter().all(|r| r.len() >= 3), "{}", country.name);
        }
    }

    #[test]
    fn numbers_are_written_in_their_shortest_form() {
        for (tenths, text) in [
            (0, "0"),
            (5, ".5"),
            (-5, "-.5"),
            (10, "1"),
            (15, "1.5"),
            (-120, "-12"),
            (9999, "999.9"),
        ] {
            let mut out = String::new();
            push_decimal(&mut out, tenths);
            assert_eq!(out, text);
            assert_eq!(number_len(tenths), text.len(), "{text}");
        }
    }

    #[test]
    fn the_origin_projects_to_the_centre_and_north_is_up() {
        let map = WorldMap::embedded();
        let (x, y) = map.project(0.0, 0.0);
        assert!((x - map.width() / 2.0).abs() < 1e-9);
        assert!((y - map.height() / 2.0).abs() < 1e-9);
        assert!(map.project(60.0, 25.0).1 < map.project(40.0, 25.0).1);
        assert!(map.project(-40.0, 25.0).1 > y);
        let (east, _) = map.project(0.0, 180.0);
        assert!(east > map.width() - 5.0 && east <= map.width(), "{east}");
        let (west, _) = map.project(0.0, -180.0);
        assert!((0.0..5.0).contains(&west), "{west}");
        assert_eq!(map.project(0.0, 190.0), map.project(0.0, -170.0));
    }

    #[test]
    fn a_projected_capital_falls_inside_its_country() {
        // Helsinki's point lies within Finland's outline's bounding box.
        let map = WorldMap::embedded();
        let (x, y) = map.project(60.17, 24.94);
        let finland = map.countries().iter().find(|c| c.code == "FI").unwrap();
        let points: Vec<(i64, i64)> = decode_path(&finland.path).into_iter().flatten().collect();
        let (min_x, max_x) = (
            points.iter().map(|p| p.0).min().unwrap(),
            points.iter().map(|p| p.0).max().unwrap(),
        );
        let (min_y, max_y) = (
            points.iter().map(|p| p.1).min().unwrap(),
            points.iter().map(|p| p.1).max().unwrap(),
        );
        let (x, y) = ((x * 10.0) as i64, (y * 10.0) as i64);
        assert!((min_x..=max_x).contains(&x) && (min_y..=max_y).contains(&y));
    }

    #[test]
    fn malformed_topologies_are_errors_not_panics() {
        assert!(matches!(WorldMap::parse("{"), Err(MapError::TopoJson(_))));
        let no_countries = r#"{"type":"Topology","arcs":[],"objects":{"land":{"type":"GeometryCollection","geometries":[]}}}"#;
        assert!(matches!(
            WorldMap::parse(no_countries),
            Err(MapError::MissingCountries(_))
        ));
        let bad_arc = r#"{"type":"Topology","arcs":[[[0,0],[1,0],[0,1]]],"objects":{"countries":{"type":"GeometryCollection","geometries":[{"type":"Polygon","arcs":[[-3]],"id":"246"}]}}}"#;
        assert!(matches!(
            WorldMap::parse(bad_arc),
            Err(MapError::ArcOutOfRange { arc: -3, .. })
        ));
        let point = r#"{"type":"Topology","arcs":[],"objects":{"countries":{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[0,0]}]}}}"#;
        assert!(matches!(
            WorldMap::parse(point),
            Err(MapError::NotAPolygon { kind: "Point", .. })
        ));
        let short = r#"{"type":"Topology","arcs":[[[0]]],"objects":{"countries":{"type":"GeometryCollection","geometries":[]}}}"#;
        assert!(matches!(
            WorldMap::parse(short),
            Err(MapError::ShortPosition(0))
        ));
        let empty = r#"{"type":"Topology","arcs":[],"objects":{"countries":{"type":"GeometryCollection","geometries":[]}}}"#;
        assert!(matches!(WorldMap::parse(empty), Err(MapError::NoCountries)));
    }

    #[test]
    fn a_small_unquantized_topology_parses() {
        let square = r#"{"type":"Topology","arcs":[[[-10,-10],[10,-10],[10,10],[-10,10],[-10,-10]]],"objects":{"countries":{"type":"GeometryCollection","geometries":[{"type":"Polygon","arcs":[[0]],"id":"246","properties":{"name":"Square <&>"}},{"type":"MultiPolygon","arcs":[[[-1]]],"properties":{"name":"Nameless"}}]}}}"#;
        let map = WorldMap::parse(square).unwrap();
        assert_eq!(map.countries().len(), 2);
        assert_eq!(map.countries()[0].code, "FI");
        assert_eq!(map.countries()[1].code, "");
        let svg = map.render(&Shading::new([("FI".to_owned(), 1)]));
        assert!(svg.contains("<title>Square &lt;&amp;&gt;: 1 press</title>"));
        // Symmetric about the equator: the square's top and bottom are at the edges.
        let rings = decode_path(&map.countries()[0].path);
        let ys: Vec<i64> = rings[0].iter().map(|p| p.1).collect();
        let sum = ys.iter().min().unwrap() + ys.iter().max().unwrap();
        assert!(
            (sum - (map.height() * 10.0).round() as i64).abs() <= 1,
            "{sum} vs {}",
            map.height()
        );
    }
}
