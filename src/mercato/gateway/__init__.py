"""The IEMAS proxy hub: the framework-free Router core (``core``), its HTTP face (``live``) and its
virtual-clock face (``sim``)."""
