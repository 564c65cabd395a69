using Microsoft.Data.Sqlite;

namespace DaemonEye.Coordination;

/// <summary>
/// The <c>watch_lists</c> table both rule databases hold (<see cref="SnapshotDatabase"/>,
/// <see cref="EventWindowDatabase"/>): one row per GLOB pattern of each configured list, with two
/// columns that let a rule find the rows a pattern matches through an index instead of testing every
/// row against it. <c>prefix</c> is the pattern's literal start, up to its first wildcard (<c>*</c>,
/// <c>?</c>, <c>[</c>); <c>prefix_end</c> sorts above every text that starts with <c>prefix</c>. So
/// whenever <c>x GLOB w.pattern</c> is true, so is <c>x &gt;= w.prefix AND x &lt; w.prefix_end</c>,
/// and a rule that adds that range (the pattern still decides) keeps its meaning while SQLite reads
/// only the matching part of the index on <c>x</c> (SQLite applies this itself only to a pattern
/// written in the SQL, never to one read from a table). The index on the list covers every column, so
/// a rule that tests each of its rows against a list reads the list from the index alone.
/// </summary>
/// <remarks>
/// <c>prefix_end</c> is the prefix as stored (UTF-8) followed by the byte 0xF5, made by SQLite itself
/// from the stored prefix. Every text in the tables is UTF-8 that SQLite or .NET encoded from .NET
/// strings, where no character starts with a byte above 0xF4; SQLite compares TEXT byte by byte
/// (BINARY), so any text that starts with the prefix sorts below it. GLOB stops at a NUL in the
/// pattern, so the prefix does too.
/// </remarks>
internal static class WatchListTable
{
    public const string Schema = """

        CREATE TABLE watch_lists (
          list TEXT NOT NULL,
          pattern TEXT NOT NULL,
          prefix TEXT NOT NULL,
          prefix_end TEXT NOT NULL
        );
        CREATE INDEX watch_lists_list ON watch_lists(list, prefix, prefix_end, pattern);
        """;

    /// <summary>Fills <c>watch_lists</c> (inside the caller's transaction, if any).</summary>
    public static void Load(SqliteConnection connection, IReadOnlyDictionary<string, IReadOnlyList<string>> lists)
    {
        ArgumentNullException.ThrowIfNull(lists);
        using var insert = new RowInserter(connection, "INSERT INTO watch_lists VALUES (?1, ?2, ?3, ?3 || CAST(x'F5' AS TEXT))");
        foreach (var (name, patterns) in lists)
        {
            foreach (var pattern in patterns)
            {
                insert.Text(name).Text(pattern).Text(Prefix(pattern)).Insert();
            }
        }
    }

    /// <summary>The literal start of a GLOB pattern: everything before its first <c>*</c>, <c>?</c>, <c>[</c> or NUL.</summary>
    internal static string Prefix(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var end = pattern.AsSpan().IndexOfAny("*?[\0");
        return end < 0 ? pattern : pattern[..end];
    }
}
