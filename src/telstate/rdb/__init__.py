"""Redis RDB dump files: read every Redis version, write portable files."""
