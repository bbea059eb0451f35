//! The cubecl GPU backend (wgpu, cuda): filled by the GPU-backend work.
