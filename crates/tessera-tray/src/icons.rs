//! The tray icons, one per [`TrayStatus`], embedded from `assets/icons/` (rendered from the SVG
//! sources by `assets/render.sh`) and decoded to RGBA once at start.

use crate::model::TrayStatus;

/// Edge of the embedded tray icons, in pixels (hosts scale them to their panel size).
pub const ICON_SIZE: u32 = 64;

const ACTIVE: &[u8] = include_bytes!("../../../assets/icons/64x64/tessera-active.png");
const ATTENTION: &[u8] = include_bytes!("../../../assets/icons/64x64/tessera-attention.png");
const BLOCKED: &[u8] = include_bytes!("../../../assets/icons/64x64/tessera-blocked.png");
const UNREACHABLE: &[u8] = include_bytes!("../../../assets/icons/64x64/tessera-unreachable.png");

/// The sRGB colour that identifies each state's icon (Okabe-Ito palette, colour-blind safe;
/// the shapes differ too). The screenshot test looks for these pixels.
#[must_use]
pub fn state_colour(status: TrayStatus) -> [u8; 3] {
    match status {
        TrayStatus::Active => [0x00, 0x9E, 0x73],
        TrayStatus::Attention => [0xE6, 0x9F, 0x00],
        TrayStatus::Blocked => [0xD5, 0x5E, 0x00],
        TrayStatus::Unreachable => [0x6E, 0x6E, 0x6E],
    }
}

/// A decoded icon: `size`×`size` RGBA pixels, row-major.
#[derive(Clone, PartialEq, Eq)]
pub struct Rgba {
    /// Edge length.
    pub size: u32,
    /// Pixels.
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Rgba {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rgba({0}x{0})", self.size)
    }
}

/// An embedded icon could not be decoded (a broken asset; caught by the tests).
#[derive(Debug, thiserror::Error)]
pub enum IconError {
    /// Not a PNG the decoder understands.
    #[error("the embedded {status:?} icon is not a readable PNG")]
    Decode {
        /// Which icon.
        status: TrayStatus,
        /// The decoder's error.
        #[source]
        source: png::DecodingError,
    },
    /// A PNG, but not square 8-bit RGBA of [`ICON_SIZE`].
    #[error("the embedded {status:?} icon is not {ICON_SIZE}x{ICON_SIZE} 8-bit RGBA")]
    Format {
        /// Which icon.
        status: TrayStatus,
    },
}

/// The embedded PNG of `status`.
#[must_use]
pub fn png_bytes(status: TrayStatus) -> &'static [u8] {
    match status {
        TrayStatus::Active => ACTIVE,
        TrayStatus::Attention => ATTENTION,
        TrayStatus::Blocked => BLOCKED,
        TrayStatus::Unreachable => UNREACHABLE,
    }
}

/// Decodes the icon of `status`.
///
/// # Errors
/// [`IconError`] when the embedded asset is broken.
pub fn decode(status: TrayStatus) -> Result<Rgba, IconError> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes(status)));
    let mut reader = decoder
        .read_info()
        .map_err(|source| IconError::Decode { status, source })?;
    let size = reader
        .output_buffer_size()
        .ok_or(IconError::Format { status })?;
    let mut pixels = vec![0; size];
    let info = reader
        .next_frame(&mut pixels)
        .map_err(|source| IconError::Decode { status, source })?;
    if info.color_type != png::ColorType::Rgba
        || info.bit_depth != png::BitDepth::Eight
        || info.width != ICON_SIZE
        || info.height != ICON_SIZE
    {
        return Err(IconError::Format { status });
    }
    pixels.truncate(info.buffer_size());
    Ok(Rgba {
        size: ICON_SIZE,
        pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_near(icon: &Rgba, colour: [u8; 3]) -> usize {
        icon.pixels
            .chunks_exact(4)
            .filter(|px| px[3] > 200 && px[..3].iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 8))
            .count()
    }

    #[test]
    fn every_icon_decodes_and_carries_its_own_colour_only() {
        for status in TrayStatus::ALL {
            let icon = decode(status).unwrap();
            assert_eq!(icon.pixels.len(), 64 * 64 * 4);
            let own = count_near(&icon, state_colour(status));
            // At least a fifth of the icon is the state colour, so it reads at 16 px.
            assert!(own > 64 * 64 / 5, "{status:?}: {own} pixels");
            for other in TrayStatus::ALL.into_iter().filter(|o| *o != status) {
                assert_eq!(
                    count_near(&icon, state_colour(other)),
                    0,
                    "{status:?} icon has {other:?} pixels"
                );
            }
        }
    }
}
