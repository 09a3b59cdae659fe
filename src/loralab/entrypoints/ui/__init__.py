"""The web UI (Streamlit): the platform in a browser, over the platform API's HTTP only."""
