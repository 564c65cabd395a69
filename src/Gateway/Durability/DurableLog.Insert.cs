using Microsoft.Data.Sqlite;

namespace DaemonEye.Gateway.Durability;

public sealed partial class DurableLog
{
    /// <summary>
    /// One prepared INSERT of a fixed number of rows. A batch is written with as few statements as
    /// the row counts allow (100 messages: 64 + 16 + 16 + 4): each execution of a command costs
    /// Microsoft.Data.Sqlite a data reader and a round of parameter binding, which one row per
    /// statement paid per message (docs/benchmarks.md, "Durable log").
    /// </summary>
    private sealed class InsertStatement : IDisposable
    {
        /// <summary>The statements' sizes, largest first; the last is 1 so that every count is covered.</summary>
        public static readonly int[] RowCounts = [64, 16, 4, 1];

        private readonly SqliteCommand _command;
        private readonly SqliteParameter _first, _time, _topic;
        private readonly SqliteParameter[] _publish;

        public InsertStatement(SqliteConnection connection, int rows)
        {
            Rows = rows;
            _command = connection.CreateCommand();
            var values = Enumerable.Range(0, rows).Select(i => $"($first + {i}, $time, $topic, $p{i})");
            _command.CommandText = $"INSERT INTO messages (seq, time, topic, publish) VALUES {string.Join(", ", values)}";
            _first = _command.Parameters.Add("$first", SqliteType.Integer);
            _time = _command.Parameters.Add("$time", SqliteType.Integer);
            _topic = _command.Parameters.Add("$topic", SqliteType.Text);
            _publish = [.. Enumerable.Range(0, rows).Select(i => _command.Parameters.Add($"$p{i}", SqliteType.Blob))];
            _command.Prepare();
        }

        public int Rows { get; }

        /// <summary>Inserts messages <paramref name="from"/> .. + <see cref="Rows"/> of the batch as sequences <paramref name="firstSequence"/> on; returns their bytes.</summary>
        public long Execute(SqliteTransaction transaction, Grains.PublishBatch batch, int from, long firstSequence, long time)
        {
            long bytes = 0;
            _command.Transaction = transaction;
            _first.Value = firstSequence;
            _time.Value = time;
            _topic.Value = batch.Topic;
            for (var i = 0; i < Rows; i++)
            {
                var message = batch.Message(from + i);
                _publish[i].Value = message.ToArray();
                bytes += message.Length;
            }

            _command.ExecuteNonQuery();
            return bytes;
        }

        public void Dispose() => _command.Dispose();
    }
}
