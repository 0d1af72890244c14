//! streamcart api.
