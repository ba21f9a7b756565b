//! Product-operator analysis of density matrices.
