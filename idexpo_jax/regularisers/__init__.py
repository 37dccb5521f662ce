"""regularisers."""
