//! oxtun: a layer-3 TUN miniport driver for Windows.

#![no_std]
