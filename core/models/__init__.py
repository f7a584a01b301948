"""Models on disk: metadata readers, the catalog, the hardware and the memory-fit verdict."""
