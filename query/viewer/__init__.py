"""The recording viewer served by ``scope view``: a local server that answers the
window on screen from the recording, and the page that draws it."""
