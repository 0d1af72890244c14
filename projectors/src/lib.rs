//! streamcart projectors.
