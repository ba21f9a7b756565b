//! Hardware constraints of a designed pulse: limits and penalties.
