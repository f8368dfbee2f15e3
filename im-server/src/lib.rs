//! imkit server (filled by later work).
