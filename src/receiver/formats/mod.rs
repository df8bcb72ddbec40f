//! SKELETON: the formats helper replaces this.
