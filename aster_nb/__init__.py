"""aster_nb."""
