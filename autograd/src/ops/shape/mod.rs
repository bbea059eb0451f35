//! Shape ops and views (no copy where the layout allows), and moves between dtypes and
//! devices.

mod contiguous;
mod expand;
mod narrow;
mod permute;
mod reshape;
mod slice;
mod squeeze;
mod to_device;
mod to_dtype;
