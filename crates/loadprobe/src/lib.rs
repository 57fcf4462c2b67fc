//! loadprobe
