//! streamcart processors.
