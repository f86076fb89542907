-- When a refresh token was rotated: presenting it again shortly after is a
-- client racing itself (401), later it is reuse (the family is revoked).
-- NULL for rows rotated before this column existed: treated as long ago.
ALTER TABLE refresh_tokens ADD COLUMN rotated_at INTEGER;
