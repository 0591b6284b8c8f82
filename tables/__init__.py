"""The paper's reported numbers as data, table specs, and rendering (reads run records only)."""
