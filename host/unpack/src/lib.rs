//! Layer application through directory file descriptors: whiteouts, hardlinks, xattrs, devices, DiffID verification.
