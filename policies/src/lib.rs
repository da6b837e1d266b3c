//! placeholder until the policies helper lands
