//! placeholder until the analyzer helper lands
