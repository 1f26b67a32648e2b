"""Message parsing, protocol-neutral: MIME structure with byte offsets, header fields,
envelope fields, addresses, dates, and the decoding of charsets, encoded words and
transfer encodings.

Used by IMAP (FETCH, SEARCH, SORT, THREAD), POP3 and the store's parsed cache; nothing here
speaks a protocol's wire syntax.  Every function is pure and none raises on any input
(except where it says so: `decode_transfer(strict=True)`, `load_tree`).

    content = MessageContent(raw)       # content.header() .fields() .wire() .tree() .envelope()
    root = parse_message(wire)          # structure.MimePart tree, offsets into `wire`
    find_part(root, (2, 1))             # a part by its section number (RFC 3501 §6.4.5)
"""
