//! `anbscale`, the pipeline's scaler: I420 in, I420 out, the picture scaled
//! to fit the output frame at its display aspect ratio and centred on black,
//! one plane at a time by [`Scaler`]: `fast_image_resize`'s SIMD vertical
//! pass (AVX2/SSE4.1 on x86, NEON on ARM) down the columns, then down the
//! rows of the plane turned a quarter.
//!
//! GStreamer 1.22's `videoscale` runs its n-tap filters as a scalar gather in
//! C (docs/benchmarks.md), which made scaling the costliest step after the
//! encoder. The geometry is `videoscale add-borders=true`'s, so that the two
//! are scored against the same references (bench/transcode.py).
//!
//! The arithmetic ([`Fit`], [`Scaler`]) is plain Rust over strided planes
//! and tested without GStreamer; [`AnbScale`] is the thin element around it.

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8;
use fast_image_resize::{FilterType, ImageView, ResizeAlg, ResizeOptions, Resizer};

/// Luma and chroma of black in limited-range YUV.
const BLACK: [u8; 3] = [16, 128, 128];

/// The resampling filters the element offers, by the names `videoscale`
/// gives its own (`method`).
pub const METHODS: [(&str, FilterType); 4] = [
    ("bilinear", FilterType::Bilinear),
    ("catrom", FilterType::CatmullRom),
    ("mitchell", FilterType::Mitchell),
    ("lanczos", FilterType::Lanczos3),
];

/// The filter called `name` in [`METHODS`].
pub fn method(name: &str) -> Option<FilterType> {
    METHODS.iter().find(|(n, _)| *n == name).map(|(_, filter)| *filter)
}

/// Where the scaled picture lands in the output frame, in luma samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Fit {
    /// The largest rectangle of the picture's display aspect ratio (its
    /// size times its pixel aspect ratio `par`) that fits an output of
    /// `out_width`x`out_height` square pixels, centred on an even offset so
    /// that the chroma planes line up (`videoscale add-borders=true`'s
    /// geometry: a 1080x1920 picture becomes 405x720 at x = 436).
    pub fn new(width: u32, height: u32, par: (i32, i32), out_width: u32, out_height: u32) -> Self {
        let (par_n, par_d) = if par.0 > 0 && par.1 > 0 { (f64::from(par.0), f64::from(par.1)) } else { (1.0, 1.0) };
        let display_width = f64::from(width.max(1)) * par_n / par_d;
        let scale = (f64::from(out_width) / display_width).min(f64::from(out_height) / f64::from(height.max(1)));
        let fitted_width = ((display_width * scale).round() as u32).clamp(1, out_width.max(1));
        let fitted_height = ((f64::from(height) * scale).round() as u32).clamp(1, out_height.max(1));
        Self {
            x: (out_width.saturating_sub(fitted_width) / 2) & !1,
            y: (out_height.saturating_sub(fitted_height) / 2) & !1,
            width: fitted_width,
            height: fitted_height,
        }
    }

    /// The same rectangle in a chroma plane subsampled by two both ways:
    /// every chroma sample that a luma sample of the picture falls in.
    fn chroma(self) -> Self {
        Self {
            x: self.x / 2,
            y: self.y / 2,
            width: (self.x + self.width).div_ceil(2) - self.x / 2,
            height: (self.y + self.height).div_ceil(2) - self.y / 2,
        }
    }
}

/// Why a frame cannot be scaled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("plane of {width}x{height} with stride {stride} does not fit its {len} bytes")]
    Plane { width: u32, height: u32, stride: usize, len: usize },
    #[error("the picture ({fit:?}) does not fit the output frame")]
    Outside { fit: Fit },
    #[error("resizer: {0}")]
    Resize(String),
}

/// One 8-bit plane: `height` rows of `width` samples, `stride` bytes apart
/// (the rows' padding included: `stride` x `height` bytes).
#[derive(Debug)]
pub struct Plane<'a> {
    /// All of it, padding included, as an image `stride` wide.
    image: TypedImageRef<'a, U8>,
    width: u32,
    height: u32,
}

/// One 8-bit plane to write.
#[derive(Debug)]
pub struct PlaneMut<'a> {
    image: TypedImage<'a, U8>,
    width: u32,
    height: u32,
}

/// The padded size of a plane in `len` bytes, when they hold it.
fn padded(len: usize, width: u32, height: u32, stride: usize) -> Result<(u32, u32), ScaleError> {
    let fits = width as usize <= stride && stride.checked_mul(height as usize).is_some_and(|size| size <= len);
    match u32::try_from(stride) {
        Ok(padded_width) if fits => Ok((padded_width, height)),
        _ => Err(ScaleError::Plane { width, height, stride, len }),
    }
}

impl<'a> Plane<'a> {
    /// # Errors
    /// [`ScaleError::Plane`] when `data` is shorter than `stride` x `height`.
    pub fn new(data: &'a [u8], width: u32, height: u32, stride: usize) -> Result<Self, ScaleError> {
        let (padded_width, rows) = padded(data.len(), width, height, stride)?;
        let image = TypedImageRef::new(padded_width, rows, bytemuck::cast_slice(data)).map_err(|_| ScaleError::Plane {
            width,
            height,
            stride,
            len: data.len(),
        })?;
        Ok(Self { image, width, height })
    }
}

impl<'a> PlaneMut<'a> {
    /// # Errors
    /// [`ScaleError::Plane`] when `data` is shorter than `stride` x `height`.
    pub fn new(data: &'a mut [u8], width: u32, height: u32, stride: usize) -> Result<Self, ScaleError> {
        let len = data.len();
        let (padded_width, rows) = padded(len, width, height, stride)?;
        let image = TypedImage::from_pixels_slice(padded_width, rows, bytemuck::cast_slice_mut(data)).map_err(|_| ScaleError::Plane {
            width,
            height,
            stride,
            len,
        })?;
        Ok(Self { image, width, height })
    }

    /// Paints `value` everywhere outside `fit`, which lies inside the plane.
    fn fill_around(&mut self, fit: Fit, value: u8) {
        let (left, right) = (fit.x as usize, (fit.x + fit.width) as usize);
        let (width, stride) = (self.width as usize, self.image.width() as usize);
        for (y, row) in self.image.pixels_mut().chunks_mut(stride).take(self.height as usize).enumerate() {
            let row = &mut row[..width];
            if (fit.y..fit.y + fit.height).contains(&(y as u32)) {
                row[..left].fill(U8::new(value));
                row[right..].fill(U8::new(value));
            } else {
                row.fill(U8::new(value));
            }
        }
    }
}

/// The resampler and its working buffers, kept from frame to frame.
///
/// `fast_image_resize`'s vertical pass is fast (whole rows at a time in
/// SIMD registers), its horizontal pass on one 8-bit channel much less so
/// (a gather per output sample: 2.35 of 2.78 ms for a 1080p luma plane
/// scaled to 720p). So each plane is scaled vertically, turned a quarter
/// (16x16 byte blocks transposed in SSE2 registers), scaled vertically again, and
/// turned back into the output frame: the same samples as the library's
/// own two passes, in about half the time (bench in docs/benchmarks.md).
pub struct Scaler {
    resizer: Resizer,
    filter: FilterType,
    /// The plane scaled down its columns; the same turned; that scaled
    /// down its columns (the original's rows).
    tall: Vec<U8>,
    turned: Vec<U8>,
    scaled: Vec<U8>,
}

impl std::fmt::Debug for Scaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaler").field("filter", &self.filter).finish_non_exhaustive()
    }
}

impl Scaler {
    /// A scaler with `filter`.
    pub fn new(filter: FilterType) -> Self {
        Self { resizer: Resizer::new(), filter, tall: Vec::new(), turned: Vec::new(), scaled: Vec::new() }
    }

    /// Scales one I420 frame (`src`: Y, U, V) into `dst` (Y, U, V of the
    /// output size): the picture into `fit`, black around it.
    ///
    /// # Errors
    /// [`ScaleError`] when `fit` leaves the output or the resizer refuses.
    pub fn scale_i420(&mut self, src: &[Plane<'_>; 3], dst: &mut [PlaneMut<'_>; 3], fit: Fit) -> Result<(), ScaleError> {
        for (index, (from, to)) in src.iter().zip(dst.iter_mut()).enumerate() {
            let fit = if index == 0 { fit } else { fit.chroma() };
            if fit.x + fit.width > to.width || fit.y + fit.height > to.height {
                return Err(ScaleError::Outside { fit });
            }
            to.fill_around(fit, BLACK[index]);
            self.scale_plane(from, to, fit)?;
        }
        Ok(())
    }

    /// `from` into the `fit` window of `to`.
    fn scale_plane(&mut self, from: &Plane<'_>, to: &mut PlaneMut<'_>, fit: Fit) -> Result<(), ScaleError> {
        let resize_error = |e: fast_image_resize::ResizeError| ScaleError::Resize(e.to_string());
        let buffer_error = |_| ScaleError::Resize("working buffer of the wrong size".into());
        let (width, height, out_width, out_height) = (from.width, from.height, fit.width, fit.height);
        let algorithm = ResizeAlg::Convolution(self.filter);
        let samples = |w: u32, h: u32| w as usize * h as usize;

        // Down the columns, the rows' padding left out.
        self.tall.resize(samples(width, out_height), U8::new(0));
        let mut tall = TypedImage::from_pixels_slice(width, out_height, &mut self.tall).map_err(buffer_error)?;
        let crop = ResizeOptions::new().resize_alg(algorithm).crop(0.0, 0.0, f64::from(width), f64::from(height));
        self.resizer.resize_typed(&from.image, &mut tall, &crop).map_err(resize_error)?;

        // Turned, the rows become columns: down them again.
        self.turned.resize(samples(width, out_height), U8::new(0));
        turn(
            bytemuck::cast_slice(&self.tall),
            out_height as usize,
            width as usize,
            width as usize,
            bytemuck::cast_slice_mut(&mut self.turned),
            out_height as usize,
        );
        let turned = TypedImageRef::new(out_height, width, &self.turned).map_err(buffer_error)?;
        self.scaled.resize(samples(out_height, out_width), U8::new(0));
        let mut scaled = TypedImage::from_pixels_slice(out_height, out_width, &mut self.scaled).map_err(buffer_error)?;
        self.resizer.resize_typed(&turned, &mut scaled, &ResizeOptions::new().resize_alg(algorithm)).map_err(resize_error)?;

        // Turned back, into the window.
        let stride = to.image.width() as usize;
        let start = fit.y as usize * stride + fit.x as usize;
        let window = &mut bytemuck::cast_slice_mut::<U8, u8>(to.image.pixels_mut())[start..];
        turn(bytemuck::cast_slice(&self.scaled), out_width as usize, out_height as usize, out_height as usize, window, stride);
        Ok(())
    }
}

/// Writes the transpose of `rows` x `cols` bytes of `src` (rows `stride`
/// apart) into `dst` (its rows, `cols` of them, `dst_stride` apart), in
/// 16x16 blocks.
fn turn(src: &[u8], rows: usize, cols: usize, stride: usize, dst: &mut [u8], dst_stride: usize) {
    const BLOCK: usize = 16;
    for r0 in (0..rows).step_by(BLOCK) {
        let block_rows = (rows - r0).min(BLOCK);
        for c0 in (0..cols).step_by(BLOCK) {
            let block_cols = (cols - c0).min(BLOCK);
            if block_rows == BLOCK && block_cols == BLOCK {
                let block: [[u8; BLOCK]; BLOCK] = std::array::from_fn(|r| {
                    let at = (r0 + r) * stride + c0;
                    src[at..at + BLOCK].try_into().unwrap_or_default()
                });
                for (c, column) in turn_block(block).iter().enumerate() {
                    let at = (c0 + c) * dst_stride + r0;
                    dst[at..at + BLOCK].copy_from_slice(column);
                }
            } else {
                for r in 0..block_rows {
                    for c in 0..block_cols {
                        dst[(c0 + c) * dst_stride + r0 + r] = src[(r0 + r) * stride + c0 + c];
                    }
                }
            }
        }
    }
}

/// The transpose of a 16x16 block of bytes in SSE2 registers: four rounds
/// of interleaving rows i and i + 8 (bytes, then pairs, fours and eights),
/// the rows taken in bit-reversed order so that the columns come out in order.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn turn_block(rows: [[u8; 16]; 16]) -> [[u8; 16]; 16] {
    use safe_arch::{
        m128i, unpack_high_i8_m128i, unpack_high_i16_m128i, unpack_high_i32_m128i, unpack_high_i64_m128i, unpack_low_i8_m128i,
        unpack_low_i16_m128i, unpack_low_i32_m128i, unpack_low_i64_m128i,
    };
    const BIT_REVERSED: [usize; 16] = [0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15];
    let mut v: [m128i; 16] = std::array::from_fn(|i| m128i::from(rows[BIT_REVERSED[i]]));
    /// Interleaves two registers: their low halves, their high halves.
    type Interleave = fn(m128i, m128i) -> (m128i, m128i);
    let rounds: [Interleave; 4] = [
        |a, b| (unpack_low_i8_m128i(a, b), unpack_high_i8_m128i(a, b)),
        |a, b| (unpack_low_i16_m128i(a, b), unpack_high_i16_m128i(a, b)),
        |a, b| (unpack_low_i32_m128i(a, b), unpack_high_i32_m128i(a, b)),
        |a, b| (unpack_low_i64_m128i(a, b), unpack_high_i64_m128i(a, b)),
    ];
    for interleave in rounds {
        let before = v;
        for i in 0..8 {
            (v[2 * i], v[2 * i + 1]) = interleave(before[i], before[i + 8]);
        }
    }
    v.map(<[u8; 16]>::from)
}

/// The transpose of a 16x16 block of bytes (where SSE2 is not there).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn turn_block(rows: [[u8; 16]; 16]) -> [[u8; 16]; 16] {
    std::array::from_fn(|c| std::array::from_fn(|r| rows[r][c]))
}

pub use element::AnbScale;

/// The GStreamer element around [`Scaler`].
mod element {
    use gstreamer as gst;
    use gstreamer::glib;
    use gstreamer::subclass::prelude::*;
    use gstreamer_base::subclass::BaseTransformMode;
    use gstreamer_base::subclass::prelude::*;
    use gstreamer_video as gst_video;
    use gstreamer_video::prelude::*;
    use gstreamer_video::subclass::prelude::*;

    glib::wrapper! {
        /// `anbscale`: see the module's documentation. Its one property,
        /// `method`, names the filter ([`super::METHODS`]; `catrom` by default).
        pub struct AnbScale(ObjectSubclass<imp::AnbScale>) @extends gst_video::VideoFilter, gstreamer_base::BaseTransform, gst::Element, gst::Object;
    }

    impl AnbScale {
        /// Makes `anbscale` known to element factories (once per process).
        ///
        /// # Errors
        /// GStreamer's, when it refuses the registration.
        pub fn register() -> Result<(), glib::BoolError> {
            static REGISTERED: std::sync::OnceLock<Result<(), glib::BoolError>> = std::sync::OnceLock::new();
            REGISTERED.get_or_init(|| gst::Element::register(None, "anbscale", gst::Rank::NONE, Self::static_type())).clone()
        }
    }

    mod imp {
        use std::sync::{LazyLock, Mutex, PoisonError};

        use fast_image_resize::FilterType;

        use super::*;
        use crate::scale::{Fit, Plane, PlaneMut, Scaler, method};

        static CAT: LazyLock<gst::DebugCategory> =
            LazyLock::new(|| gst::DebugCategory::new("anbscale", gst::DebugColorFlags::empty(), Some("ANB SIMD scaler")));

        struct State {
            fit: Fit,
            scaler: Scaler,
        }

        pub struct AnbScale {
            method: Mutex<(String, FilterType)>,
            state: Mutex<Option<State>>,
        }

        impl Default for AnbScale {
            fn default() -> Self {
                Self { method: Mutex::new(("catrom".into(), FilterType::CatmullRom)), state: Mutex::new(None) }
            }
        }

        #[glib::object_subclass]
        impl ObjectSubclass for AnbScale {
            const NAME: &'static str = "AnbScale";
            type Type = super::AnbScale;
            type ParentType = gst_video::VideoFilter;
        }

        impl ObjectImpl for AnbScale {
            fn properties() -> &'static [glib::ParamSpec] {
                static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
                    vec![
                        glib::ParamSpecString::builder("method")
                            .nick("Method")
                            .blurb("Resampling filter: bilinear, catrom, mitchell or lanczos")
                            .default_value(Some("catrom"))
                            .mutable_ready()
                            .build(),
                    ]
                });
                PROPERTIES.as_ref()
            }

            fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
                if pspec.name() == "method" {
                    let name: String = value.get::<Option<String>>().ok().flatten().unwrap_or_else(|| "catrom".into());
                    match method(&name) {
                        Some(filter) => *self.method.lock().unwrap_or_else(PoisonError::into_inner) = (name, filter),
                        None => gst::warning!(CAT, imp = self, "unknown method {name:?}; keeping the current one"),
                    }
                }
            }

            fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
                match pspec.name() {
                    "method" => self.method.lock().unwrap_or_else(PoisonError::into_inner).0.to_value(),
                    _ => None::<String>.to_value(),
                }
            }
        }

        impl GstObjectImpl for AnbScale {}

        impl ElementImpl for AnbScale {
            fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                    gst::subclass::ElementMetadata::new(
                        "ANB scaler",
                        "Filter/Converter/Video/Scaler",
                        "Scales I420 to the output size at the display aspect ratio, black borders around",
                        "ANB Rising Stars Showcase",
                    )
                });
                Some(&METADATA)
            }

            fn pad_templates() -> &'static [gst::PadTemplate] {
                static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                    let caps = gst_video::VideoCapsBuilder::new().format(gst_video::VideoFormat::I420).build();
                    [gst::PadDirection::Src, gst::PadDirection::Sink]
                        .into_iter()
                        .map(|direction| {
                            let name = if direction == gst::PadDirection::Src { "src" } else { "sink" };
                            gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps).expect("valid pad template")
                        })
                        .collect()
                });
                TEMPLATES.as_ref()
            }
        }

        impl BaseTransformImpl for AnbScale {
            const MODE: BaseTransformMode = BaseTransformMode::NeverInPlace;
            // Same caps on both sides: frames go through untouched.
            const PASSTHROUGH_ON_SAME_CAPS: bool = true;
            const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

            fn transform_caps(&self, _direction: gst::PadDirection, caps: &gst::Caps, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
                let mut other = caps.clone();
                for structure in other.make_mut().iter_mut() {
                    structure.set("width", gst::IntRange::new(1, i32::MAX));
                    structure.set("height", gst::IntRange::new(1, i32::MAX));
                    structure.remove_field("pixel-aspect-ratio");
                }
                Some(match filter {
                    Some(filter) => filter.intersect_with_mode(&other, gst::CapsIntersectMode::First),
                    None => other,
                })
            }

            fn fixate_caps(&self, _direction: gst::PadDirection, caps: &gst::Caps, othercaps: gst::Caps) -> gst::Caps {
                // Left free, the other side keeps this side's size and square pixels.
                let mut othercaps = othercaps;
                othercaps.truncate();
                if let (Some(from), Some(to)) = (caps.structure(0).map(ToOwned::to_owned), othercaps.make_mut().structure_mut(0)) {
                    for field in ["width", "height"] {
                        if let Ok(value) = from.get::<i32>(field) {
                            to.fixate_field_nearest_int(field, value);
                        }
                    }
                    if to.has_field("pixel-aspect-ratio") {
                        to.fixate_field_nearest_fraction("pixel-aspect-ratio", gst::Fraction::new(1, 1));
                    } else {
                        to.set("pixel-aspect-ratio", gst::Fraction::new(1, 1));
                    }
                }
                othercaps.fixate();
                othercaps
            }
        }

        impl VideoFilterImpl for AnbScale {
            fn set_info(
                &self,
                _incaps: &gst::Caps,
                in_info: &gst_video::VideoInfo,
                _outcaps: &gst::Caps,
                out_info: &gst_video::VideoInfo,
            ) -> Result<(), gst::LoggableError> {
                let (in_par, out_par) = (in_info.par(), out_info.par());
                // A non-square output pixel stretches the display box the other way.
                let par = (in_par.numer().saturating_mul(out_par.denom()), in_par.denom().saturating_mul(out_par.numer()));
                let fit = Fit::new(in_info.width(), in_info.height(), par, out_info.width(), out_info.height());
                gst::debug!(
                    CAT,
                    imp = self,
                    "{}x{} -> {fit:?} in {}x{}",
                    in_info.width(),
                    in_info.height(),
                    out_info.width(),
                    out_info.height()
                );
                let filter = self.method.lock().unwrap_or_else(PoisonError::into_inner).1;
                *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Some(State { fit, scaler: Scaler::new(filter) });
                Ok(())
            }

            fn transform_frame(
                &self,
                inframe: &gst_video::VideoFrameRef<&gst::BufferRef>,
                outframe: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
            ) -> Result<gst::FlowSuccess, gst::FlowError> {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(state) = state.as_mut() else {
                    gst::element_imp_error!(self, gst::CoreError::Negotiation, ["no caps before the first frame"]);
                    return Err(gst::FlowError::NotNegotiated);
                };
                let result = (|| {
                    let src = [0, 1, 2].map(|plane| {
                        let data = inframe.plane_data(plane).unwrap_or_default();
                        Plane::new(data, inframe.comp_width(plane), inframe.comp_height(plane), stride(inframe.plane_stride(), plane))
                    });
                    let [y, u, v] = src;
                    let src = [y?, u?, v?];
                    let (out_widths, out_heights) = ([0, 1, 2].map(|p| outframe.comp_width(p)), [0, 1, 2].map(|p| outframe.comp_height(p)));
                    let strides = [0, 1, 2].map(|p| stride(outframe.plane_stride(), p));
                    let [y, u, v, _] = outframe.planes_data_mut();
                    let dst = [
                        PlaneMut::new(y, out_widths[0], out_heights[0], strides[0])?,
                        PlaneMut::new(u, out_widths[1], out_heights[1], strides[1])?,
                        PlaneMut::new(v, out_widths[2], out_heights[2], strides[2])?,
                    ];
                    let mut dst = dst;
                    state.scaler.scale_i420(&src, &mut dst, state.fit)
                })();
                result.map(|()| gst::FlowSuccess::Ok).map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Failed, ["cannot scale a frame: {e}"]);
                    gst::FlowError::Error
                })
            }
        }

        fn stride(strides: &[i32], plane: u32) -> usize {
            strides.get(plane as usize).and_then(|s| usize::try_from(*s).ok()).unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane of `width`x`height` samples `stride` apart (the gap filled
    /// with 0xEE, which must never show), from `sample(x, y)`.
    fn plane(width: u32, height: u32, stride: usize, sample: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        let mut data = vec![0xEE; stride * height as usize];
        for y in 0..height {
            for x in 0..width {
                data[y as usize * stride + x as usize] = sample(x, y);
            }
        }
        data
    }

    /// Detail at every scale: a gradient, a hard edge and a deterministic
    /// noise, different on each plane (`seed`).
    fn busy(seed: u32) -> impl Fn(u32, u32) -> u8 {
        move |x, y| {
            let noise = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791)) % 61;
            let edge = if (x / 7 + y / 5) % 2 == 0 { 90 } else { 0 };
            (30 + (x * 3 + y * 2 + seed * 17) % 100 + edge + noise).min(255) as u8
        }
    }

    /// Catmull-Rom (a = -0.5), the kernel of `videoscale method=catrom`.
    fn catmull_rom(x: f64) -> f64 {
        let x = x.abs();
        if x < 1.0 {
            (1.5 * x - 2.5) * x * x + 1.0
        } else if x < 2.0 {
            ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
        } else {
            0.0
        }
    }

    /// The reference scaler: a plain separable convolution in f64, the
    /// kernel widened by the reduction when shrinking (so that it filters
    /// out what the smaller picture cannot hold), taps past the edges
    /// dropped and the rest renormalised; columns first, rounded to 8 bits
    /// in between (as `fast_image_resize` does when shrinking).
    fn reference_resize(src: &[u8], width: usize, height: usize, stride: usize, out_w: usize, out_h: usize) -> Vec<u8> {
        fn weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
            let scale = input as f64 / output as f64;
            let widen = scale.max(1.0);
            let support = 2.0 * widen;
            (0..output)
                .map(|o| {
                    let centre = (o as f64 + 0.5) * scale;
                    let first = ((centre - support + 0.5).floor().max(0.0)) as usize;
                    let last = ((centre + support + 0.5).floor() as usize).min(input);
                    let taps: Vec<f64> = (first..last).map(|i| catmull_rom((i as f64 - centre + 0.5) / widen)).collect();
                    let sum: f64 = taps.iter().sum();
                    (first, taps.into_iter().map(|t| t / sum).collect())
                })
                .collect()
        }
        let to_u8 = |v: f64| v.round().clamp(0.0, 255.0) as u8;
        let (across, down) = (weights(width, out_w), weights(height, out_h));
        let rows: Vec<Vec<u8>> = down
            .iter()
            .map(|(first, taps)| {
                (0..width)
                    .map(|x| to_u8(taps.iter().enumerate().map(|(k, w)| w * f64::from(src[(first + k) * stride + x])).sum()))
                    .collect()
            })
            .collect();
        let mut out = vec![0; out_w * out_h];
        for (oy, row) in rows.iter().enumerate() {
            for (ox, (first, taps)) in across.iter().enumerate() {
                out[oy * out_w + ox] = to_u8(taps.iter().enumerate().map(|(k, w)| w * f64::from(row[first + k])).sum());
            }
        }
        out
    }

    /// Scales a busy `width`x`height` frame (strides padded) into
    /// `out_w`x`out_h` and checks each plane against the reference scaler
    /// inside the picture and black outside it; returns the fit.
    fn scale_and_compare(width: u32, height: u32, par: (i32, i32), out_w: u32, out_h: u32) -> Fit {
        let chroma = (width.div_ceil(2), height.div_ceil(2));
        let sizes = [(width, height), chroma, chroma];
        let strides = sizes.map(|(w, _)| w as usize + 13);
        let inputs: Vec<Vec<u8>> = (0..3).map(|p| plane(sizes[p].0, sizes[p].1, strides[p], busy(p as u32))).collect();
        let out_sizes = [(out_w, out_h), (out_w / 2, out_h / 2), (out_w / 2, out_h / 2)];
        let out_strides = out_sizes.map(|(w, _)| w as usize + 5);
        let mut outputs: Vec<Vec<u8>> = (0..3).map(|p| vec![0xEE; out_strides[p] * out_sizes[p].1 as usize]).collect();
        let fit = Fit::new(width, height, par, out_w, out_h);
        {
            let src = [0, 1, 2].map(|p| Plane::new(&inputs[p], sizes[p].0, sizes[p].1, strides[p]).expect("input plane"));
            let [y, u, v] = &mut outputs[..] else { unreachable!() };
            let mut dst = [
                PlaneMut::new(y, out_sizes[0].0, out_sizes[0].1, out_strides[0]).expect("Y"),
                PlaneMut::new(u, out_sizes[1].0, out_sizes[1].1, out_strides[1]).expect("U"),
                PlaneMut::new(v, out_sizes[2].0, out_sizes[2].1, out_strides[2]).expect("V"),
            ];
            Scaler::new(FilterType::CatmullRom).scale_i420(&src, &mut dst, fit).expect("scaled");
        }
        for p in 0..3 {
            let rect = if p == 0 { fit } else { fit.chroma() };
            let expected = reference_resize(
                &inputs[p],
                sizes[p].0 as usize,
                sizes[p].1 as usize,
                strides[p],
                rect.width as usize,
                rect.height as usize,
            );
            let (mut worst, mut total) = (0u8, 0u64);
            for y in 0..out_sizes[p].1 {
                for x in 0..out_sizes[p].0 {
                    let got = outputs[p][y as usize * out_strides[p] + x as usize];
                    let inside = (rect.x..rect.x + rect.width).contains(&x) && (rect.y..rect.y + rect.height).contains(&y);
                    if inside {
                        let want = expected[((y - rect.y) * rect.width + (x - rect.x)) as usize];
                        worst = worst.max(got.abs_diff(want));
                        total += u64::from(got.abs_diff(want));
                    } else {
                        assert_eq!(got, BLACK[p], "plane {p} at ({x}, {y}) is outside {rect:?}: black");
                    }
                }
                let gap = &outputs[p][y as usize * out_strides[p] + out_sizes[p].0 as usize..(y as usize + 1) * out_strides[p]];
                assert!(gap.iter().all(|b| *b == 0xEE), "plane {p}, row {y}: nothing written past the row's end");
            }
            let mean = total as f64 / f64::from(rect.width * rect.height);
            assert!(worst <= 2 && mean <= 0.25, "plane {p} of {width}x{height}: worst {worst}, mean {mean:.3} off the reference");
        }
        fit
    }

    #[test]
    fn the_picture_fits_at_its_display_aspect_ratio_on_even_offsets() {
        assert_eq!(Fit::new(1920, 1080, (1, 1), 1280, 720), Fit { x: 0, y: 0, width: 1280, height: 720 });
        assert_eq!(Fit::new(1080, 1920, (1, 1), 1280, 720), Fit { x: 436, y: 0, width: 405, height: 720 }, "videoscale's geometry");
        assert_eq!(Fit::new(640, 480, (1, 1), 1280, 720), Fit { x: 160, y: 0, width: 960, height: 720 });
        assert_eq!(Fit::new(2560, 1080, (1, 1), 1280, 720), Fit { x: 0, y: 90, width: 1280, height: 540 });
        assert_eq!(Fit::new(960, 1080, (2, 1), 1280, 720), Fit { x: 0, y: 0, width: 1280, height: 720 }, "anamorphic 16:9");
        assert_eq!(Fit::new(1281, 721, (1, 1), 1280, 720), Fit { x: 0, y: 0, width: 1279, height: 720 }, "never stretched");
        assert_eq!(Fit::new(7, 3, (0, 1), 1280, 720), Fit { x: 0, y: 84, width: 1280, height: 549 }, "a broken ratio counts as square");
        let fit = Fit::new(1080, 1920, (1, 1), 1280, 720);
        assert_eq!(fit.chroma(), Fit { x: 218, y: 0, width: 203, height: 360 }, "every chroma sample the picture touches");
    }

    #[test]
    fn a_landscape_frame_of_odd_size_matches_the_reference_scaler() {
        assert_eq!(scale_and_compare(197, 83, (1, 1), 128, 72), Fit { x: 0, y: 8, width: 128, height: 54 });
    }

    #[test]
    fn a_portrait_frame_of_odd_size_matches_the_reference_scaler() {
        assert_eq!(scale_and_compare(91, 163, (1, 1), 128, 72), Fit { x: 44, y: 0, width: 40, height: 72 });
    }

    #[test]
    fn a_small_frame_is_enlarged_like_the_reference_scaler() {
        assert_eq!(scale_and_compare(23, 13, (1, 1), 128, 72), Fit { x: 0, y: 0, width: 127, height: 72 });
    }

    #[test]
    fn a_full_hd_frame_matches_the_reference_scaler_in_both_orientations() {
        scale_and_compare(1920, 1080, (1, 1), 1280, 720);
        scale_and_compare(1080, 1920, (1, 1), 1280, 720);
    }

    #[test]
    fn the_picture_is_neither_flipped_nor_mirrored() {
        // A bright top-left quarter: after scaling, the top-left of the
        // picture is bright and the other three corners dark.
        let (width, height) = (120, 200);
        let data = plane(width, height, 128, |x, y| if x < width / 2 && y < height / 2 { 235 } else { 16 });
        let chroma = vec![128; 64 * 100];
        let src = [
            Plane::new(&data, width, height, 128).expect("Y"),
            Plane::new(&chroma, 60, 100, 64).expect("U"),
            Plane::new(&chroma, 60, 100, 64).expect("V"),
        ];
        let (mut y, mut u, mut v) = (vec![0; 128 * 72], vec![0; 64 * 36], vec![0; 64 * 36]);
        let fit = Fit::new(width, height, (1, 1), 128, 72);
        Scaler::new(FilterType::CatmullRom)
            .scale_i420(
                &src,
                &mut [
                    PlaneMut::new(&mut y, 128, 72, 128).expect("Y"),
                    PlaneMut::new(&mut u, 64, 36, 64).expect("U"),
                    PlaneMut::new(&mut v, 64, 36, 64).expect("V"),
                ],
                fit,
            )
            .expect("scaled");
        let at = |x: u32, yy: u32| y[((fit.y + yy) * 128 + fit.x + x) as usize];
        let (right, bottom) = (fit.width - 2, fit.height - 2);
        assert_eq!([at(1, 1), at(right, 1), at(1, bottom), at(right, bottom)], [235, 16, 16, 16], "{fit:?}");
    }

    #[test]
    fn turning_a_plane_of_any_size_transposes_it() {
        for (rows, cols) in [(8, 8), (1, 1), (3, 17), (16, 9), (41, 130)] {
            let stride = cols + 3;
            let src = plane(cols as u32, rows as u32, stride, busy(7));
            let dst_stride = rows + 5;
            let mut dst = vec![0xEE; cols * dst_stride];
            turn(&src, rows, cols, stride, &mut dst, dst_stride);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[c * dst_stride + r], src[r * stride + c], "{rows}x{cols} at ({r}, {c})");
                }
            }
            assert!(dst.chunks(dst_stride).all(|row| row[rows..].iter().all(|b| *b == 0xEE)), "{rows}x{cols}: nothing past each row");
        }
    }

    #[test]
    fn a_plane_too_short_for_its_rows_is_refused() {
        let data = vec![0; 100];
        assert!(Plane::new(&data, 10, 10, 10).is_ok());
        assert!(Plane::new(&data, 10, 10, 11).is_err(), "the rows would end past the data");
        assert!(Plane::new(&data, 12, 5, 10).is_err(), "rows wider than their stride overlap");
        let mut data = vec![0; 95];
        assert!(PlaneMut::new(&mut data, 5, 9, 10).is_ok());
        assert!(PlaneMut::new(&mut data, 5, 10, 10).is_err(), "the last row's padding is part of the plane");
    }

    #[test]
    fn a_picture_outside_the_frame_is_an_error_not_a_panic() {
        let data = vec![0; 16 * 16];
        let src = [0, 1, 2].map(|_| Plane::new(&data, 16, 16, 16).expect("plane"));
        let (mut y, mut u, mut v) = (vec![0; 16 * 16], vec![0; 8 * 8], vec![0; 8 * 8]);
        let mut dst = [
            PlaneMut::new(&mut y, 16, 16, 16).expect("Y"),
            PlaneMut::new(&mut u, 8, 8, 8).expect("U"),
            PlaneMut::new(&mut v, 8, 8, 8).expect("V"),
        ];
        let fit = Fit { x: 8, y: 0, width: 16, height: 16 };
        assert_eq!(Scaler::new(FilterType::CatmullRom).scale_i420(&src, &mut dst, fit), Err(ScaleError::Outside { fit }));
    }

    #[test]
    fn every_method_has_a_filter_and_unknown_names_none() {
        assert!(METHODS.iter().all(|(name, filter)| method(name) == Some(*filter)));
        assert_eq!(method("catrom"), Some(FilterType::CatmullRom));
        assert_eq!(method("4-tap"), None);
    }
}
