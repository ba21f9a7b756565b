//! NIfTI-MRS: reader and writer (in progress).
