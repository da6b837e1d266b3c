//! Decoded image → the model's `f32` input tensor (one image, no batch dimension).
//!
//! The order is fixed, and each step is what the reference Python pipelines do:
//!
//! 1. **Channels.** RGB → gray uses the ITU-R 601-2 luma `0.299 R + 0.587 G + 0.114 B` (PIL's
//!    `convert("L")`), done before the resize; gray → 3 channels replicates the resized plane.
//! 2. **Resize** to `width × height`, ignoring the aspect ratio (Keras `load_img`, torchvision
//!    `Resize((h, w))`):
//!    - `nearest` is PIL's `NEAREST`: source index `floor((i + 0.5) · src / dst)`, computed as
//!      PIL does, by accumulation in f64 (it matters on exact ties);
//!    - `bilinear` is PIL's `BILINEAR`: a separable triangle filter whose support grows with
//!      the shrink factor, so downscaling averages (antialiasing) instead of skipping pixels.
//!      It matches PIL on float images to ~1e-6 (PIL rounds to 8 bits between its two passes
//!      for 8-bit images, so expect ±1/255 against `Image.resize` on mode `L`).
//! 3. **Centre crop** to `crop` when set (torchvision `CenterCrop`: offsets
//!    `round((size − crop) / 2)`, ties to even).
//! 4. **Normalise** intensities `x ∈ [0, 1]` (see [`Normalization`]) and write in the model's
//!    layout, NCHW or NHWC.

use crate::decode::DecodedImage;
use crate::metadata::{InputSpec, Layout, Normalization, ResizeFilter};

/// Turns decoded images into input tensors for one [`InputSpec`].
#[derive(Debug, Clone)]
pub struct Preprocessor {
    spec: InputSpec,
    scale: Vec<f32>,
    offset: Vec<f32>,
}

impl Preprocessor {
    /// Prepares the per-channel affine map `x · scale + offset` for `spec`.
    pub fn new(spec: &InputSpec) -> Self {
        let c = spec.channels as usize;
        let pick = |v: &[f32], i: usize| if v.len() == 1 { v[0] } else { v[i] };
        let (scale, offset) = match &spec.normalization {
            Normalization::Unit => (vec![1.0; c], vec![0.0; c]),
            Normalization::MeanStd { mean, std } => (0..c)
                .map(|i| (1.0 / pick(std, i), -pick(mean, i) / pick(std, i)))
                .unzip(),
            Normalization::Range { min, max } => (vec![max - min; c], vec![*min; c]),
        };
        Preprocessor {
            spec: spec.clone(),
            scale,
            offset,
        }
    }

    /// The spec this preprocessor implements.
    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// The tensor for one image, `spec.image_len()` values in the spec's layout.
    pub fn tensor(&self, image: &DecodedImage) -> Vec<f32> {
        let s = &self.spec;
        let gray_in = if s.channels == 1 && image.channels == 3 {
            Some(to_gray(image))
        } else {
            None
        };
        let src = gray_in.as_ref().unwrap_or(image);
        let resized = resize(src, s.width, s.height, s.resize);
        let cropped = match s.crop {
            Some([w, h]) => center_crop(&resized, w, h),
            None => resized,
        };
        self.write(&cropped)
    }

    fn write(&self, img: &DecodedImage) -> Vec<f32> {
        let c_out = self.spec.channels as usize;
        let c_in = img.channels as usize;
        let hw = img.width as usize * img.height as usize;
        let mut out = vec![0.0; hw * c_out];
        for p in 0..hw {
            for c in 0..c_out {
                let x = img.pixels[p * c_in + c.min(c_in - 1)];
                let v = x * self.scale[c] + self.offset[c];
                let i = match self.spec.layout {
                    Layout::Nchw => c * hw + p,
                    Layout::Nhwc => p * c_out + c,
                };
                out[i] = v;
            }
        }
        out
    }
}

/// ITU-R 601-2 luma of an RGB image.
pub fn to_gray(image: &DecodedImage) -> DecodedImage {
    let pixels = image
        .pixels
        .chunks_exact(3)
        .map(|p| p[0] * 0.299 + p[1] * 0.587 + p[2] * 0.114)
        .collect();
    DecodedImage {
        width: image.width,
        height: image.height,
        channels: 1,
        pixels,
    }
}

/// Resizes to `width × height` with PIL's semantics (see the module docs).
pub fn resize(image: &DecodedImage, width: u32, height: u32, filter: ResizeFilter) -> DecodedImage {
    if image.width == width && image.height == height {
        return image.clone();
    }
    let c = image.channels as usize;
    let (sw, sh, dw, dh) = (
        image.width as usize,
        image.height as usize,
        width as usize,
        height as usize,
    );
    let pixels = match filter {
        ResizeFilter::Nearest => {
            let xs = nearest_indices(sw, dw);
            let mut out = Vec::with_capacity(dw * dh * c);
            for y in nearest_indices(sh, dh) {
                let row = y * sw;
                for &x in &xs {
                    out.extend_from_slice(&image.pixels[(row + x) * c..(row + x + 1) * c]);
                }
            }
            out
        }
        ResizeFilter::Bilinear => {
            // Horizontal pass (sh rows × dw), then vertical (dh × dw), as PIL does.
            let hx = coefficients(sw, dw);
            let mut tmp = vec![0.0f32; sh * dw * c];
            for y in 0..sh {
                for (x, (start, w)) in hx.iter().enumerate() {
                    for ch in 0..c {
                        let mut acc = 0.0f64;
                        for (k, wk) in w.iter().enumerate() {
                            acc += f64::from(image.pixels[(y * sw + start + k) * c + ch]) * wk;
                        }
                        tmp[(y * dw + x) * c + ch] = acc as f32;
                    }
                }
            }
            let vy = coefficients(sh, dh);
            let mut out = vec![0.0f32; dh * dw * c];
            for (y, (start, w)) in vy.iter().enumerate() {
                for x in 0..dw {
                    for ch in 0..c {
                        let mut acc = 0.0f64;
                        for (k, wk) in w.iter().enumerate() {
                            acc += f64::from(tmp[((start + k) * dw + x) * c + ch]) * wk;
                        }
                        out[(y * dw + x) * c + ch] = acc as f32;
                    }
                }
            }
            out
        }
    };
    DecodedImage {
        width,
        height,
        channels: image.channels,
        pixels,
    }
}

/// PIL's nearest source indices: it starts at `scale / 2` and *accumulates* `scale` in f64,
/// so exact ties (e.g. 10 → 15 px) round the way PIL's running sum does, not the way
/// `(i + 0.5) · scale` would.
fn nearest_indices(src: usize, dst: usize) -> Vec<usize> {
    let scale = src as f64 / dst as f64;
    let mut at = scale * 0.5;
    (0..dst)
        .map(|_| {
            let i = (at.floor() as usize).min(src - 1);
            at += scale;
            i
        })
        .collect()
}

/// PIL's `precompute_coeffs` for the bilinear (triangle) filter: for each output index, the
/// first input index and the normalised weights.
fn coefficients(src: usize, dst: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = src as f64 / dst as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // triangle support 1.0 × filterscale
    (0..dst)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
            let xmax = ((center + support + 0.5).floor() as usize).min(src);
            let mut w: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = (x as f64 - center + 0.5) / filterscale;
                    (1.0 - t.abs()).max(0.0)
                })
                .collect();
            let total: f64 = w.iter().sum();
            if total > 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (xmin, w)
        })
        .collect()
}

/// Centre crop (torchvision `CenterCrop`); `width`/`height` must fit.
pub fn center_crop(image: &DecodedImage, width: u32, height: u32) -> DecodedImage {
    let width = width.min(image.width);
    let height = height.min(image.height);
    let left = (f64::from(image.width - width) / 2.0).round_ties_even() as usize;
    let top = (f64::from(image.height - height) / 2.0).round_ties_even() as usize;
    let c = image.channels as usize;
    let sw = image.width as usize;
    let mut pixels = Vec::with_capacity(width as usize * height as usize * c);
    for y in top..top + height as usize {
        let start = (y * sw + left) * c;
        pixels.extend_from_slice(&image.pixels[start..start + width as usize * c]);
    }
    DecodedImage {
        width,
        height,
        channels: image.channels,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: u32, height: u32, pixels: Vec<f32>) -> DecodedImage {
        DecodedImage {
            width,
            height,
            channels: 1,
            pixels,
        }
    }

    #[test]
    fn nearest_matches_pil_index_rule() {
        // 5 → 2: PIL picks floor(0.5·2.5)=1 and floor(1.5·2.5)=3.
        let img = gray(5, 1, vec![0.0, 0.1, 0.2, 0.3, 0.4]);
        let out = resize(&img, 2, 1, ResizeFilter::Nearest);
        assert_eq!(out.pixels, vec![0.1, 0.3]);
    }

    #[test]
    fn bilinear_shrink_averages() {
        let img = gray(4, 1, vec![0.0, 1.0, 0.0, 1.0]);
        let out = resize(&img, 2, 1, ResizeFilter::Bilinear);
        for v in out.pixels {
            assert!((v - 0.5).abs() < 0.2, "{v}");
        }
        let flat = gray(7, 3, vec![0.25; 21]);
        let out = resize(&flat, 3, 5, ResizeFilter::Bilinear);
        assert!(out.pixels.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn crop_rounds_half_to_even() {
        let img = gray(5, 1, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        // (5-2)/2 = 1.5 → 2 (ties to even, like Python's round).
        assert_eq!(center_crop(&img, 2, 1).pixels, vec![2.0, 3.0]);
    }

    #[test]
    fn layouts_and_normalisations() {
        let spec = InputSpec {
            name: None,
            layout: Layout::Nhwc,
            channels: 3,
            width: 2,
            height: 1,
            resize: ResizeFilter::Nearest,
            crop: None,
            normalization: Normalization::Range {
                min: -1.0,
                max: 1.0,
            },
        };
        let img = gray(2, 1, vec![0.0, 1.0]);
        let t = Preprocessor::new(&spec).tensor(&img);
        assert_eq!(t, vec![-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]);
        let spec = InputSpec {
            layout: Layout::Nchw,
            normalization: Normalization::MeanStd {
                mean: vec![0.5, 0.0, 1.0],
                std: vec![0.5, 1.0, 2.0],
            },
            ..spec
        };
        let t = Preprocessor::new(&spec).tensor(&img);
        assert_eq!(t, vec![-1.0, 1.0, 0.0, 1.0, -0.5, 0.0]);
    }

    #[test]
    fn rgb_to_gray_uses_pil_luma() {
        let img = DecodedImage {
            width: 1,
            height: 1,
            channels: 3,
            pixels: vec![1.0, 0.0, 0.0],
        };
        assert!((to_gray(&img).pixels[0] - 0.299).abs() < 1e-6);
    }
}
