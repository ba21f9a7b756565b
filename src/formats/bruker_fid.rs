//! Bruker TopSpin raw data (`fid` + `acqus`): reader (in progress).
