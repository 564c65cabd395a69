using DaemonEye.Topics;
using Microsoft.Data.Sqlite;

namespace DaemonEye.Gateway.Durability;

/// <summary>"The last N messages on a pattern", read without a durable consumer (<c>subscribe --last N</c>).</summary>
public sealed partial class DurableLog
{
    /// <summary>
    /// The last <paramref name="count"/> messages the log holds on topics matching
    /// <paramref name="pattern"/>, oldest first: the newest rows are looked at first (their topic and
    /// message count only) to find where those messages start, and then read on from there.
    /// </summary>
    public List<LoggedMessage> Retained(string pattern, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var found = 0;
        ulong from = 0;
        using (var connection = new SqliteConnection(_connectionString))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT seq, count, topic FROM batches ORDER BY seq DESC";
            using var rows = command.ExecuteReader();
            while (found < count && rows.Read())
            {
                if (!TopicRules.Matches(pattern, rows.GetString(2)))
                {
                    continue;
                }

                var messages = rows.GetInt32(1);
                var taken = Math.Min(messages, count - found);
                found += taken;
                // A row's messages are numbered from its seq on: skip the older ones not taken.
                from = (ulong)rows.GetInt64(0) + (ulong)(messages - taken);
            }
        }

        var retained = new List<LoggedMessage>(found);
        if (found == 0)
        {
            return retained;
        }

        using var reader = OpenReader();
        var read = new List<LoggedMessage>();
        var after = from - 1;
        while (retained.Count < found)
        {
            read.Clear();
            if (reader.Read(after, 1024, read) == 0)
            {
                break; // retention removed them meanwhile
            }

            foreach (var message in read)
            {
                after = message.Sequence;
                if (retained.Count < found && TopicRules.Matches(pattern, message.Topic))
                {
                    retained.Add(message);
                }
            }
        }

        return retained;
    }
}
