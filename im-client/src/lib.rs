//! imkit client (filled by later work).
